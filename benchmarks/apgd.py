"""Cost of the stronger attacks (APGD-CE, targeted APGD-DLR) beside the reference's PGD-10, on a profile's trained
SimpleNet and AdvSimpleNet: what the report's robustness section adds to a render.

    python -m benchmarks.apgd [--profile sample] [--repeats 3] [--device auto] [--threads N]

Uses (or trains) the profile's runs as a report does, then times each attack over the profile's attacked images
(experiments.attack_settings: strong_images, in batches of analysis.STRONG_BATCH, as the report's cached analysis
runs them) without touching the cached analyses. The table gives medians over the repeats, the images whose
attacks run (the ones the model gets right) and the robust top-1. Writes benchmarks/apgd.json.
"""
import statistics

import torch

import benchmarks
from lib import attacks, experiments
from lib.report import analysis
from lib.report.analysis import STRONG_BATCH, _final_model
from lib.study.parameters import Study
from lib.training.step_costs import timed


def attacked_loader(run, images):
    val_set, transform = experiments.val_data(run.config)
    return attacks.subset_loader(val_set, images, batch_size=STRONG_BATCH), transform


def measure(run, attack, images, repeats, device):
    """(median seconds over `repeats`, the last evaluation's summary) of `attack` on the run's attacked images."""
    loader, transform = attacked_loader(run, images)
    seconds, result = [], None
    with _final_model(run, device) as (dev, model):
        for _ in range(repeats):
            def evaluate():
                nonlocal result
                result = attacks.evaluate_under_attack(model, loader, attack, transform=transform, device=dev)
            seconds.append(timed(evaluate, dev))
    return statistics.median(seconds), result


def run(args):
    settings = experiments.attack_settings(args.profile)
    images, rows = settings["strong_images"], []
    plan = Study(args.profile, device=args.device)
    for name in ("simplenet", "advsimplenet"):
        trained = plan.run(name)
        candidates = {"PGD-10 (reference)": attacks.PGDAttack(**settings["default"])}
        candidates.update({attacks.AutoPGD(loss).name: attacks.AutoPGD(loss, seed=trained.config["seed"],
                                                                        **settings["strong"])
                           for loss in analysis.LOSSES})
        for label, attack in candidates.items():
            seconds, result = measure(trained, attack, images, args.repeats, args.device)
            rows.append(dict(model=trained.config["title"], attack=label, images=result["num_images"],
                             correct_clean=round(result["clean_acc1"] * result["num_images"] / 100),
                             robust_top1=result["adv_acc1"], seconds=seconds))
    return dict(profile=args.profile, strong=settings["strong"], batch=STRONG_BATCH, repeats=args.repeats,
                threads=torch.get_num_threads(), torch=torch.__version__, rows=rows,
                strong_seconds=sum(r["seconds"] for r in rows if not r["attack"].startswith("PGD")))


def print_table(result):
    strong = result["strong"]
    print(f"profile {result['profile']}: APGD {strong['num_steps']} steps, {strong['restarts']} restart(s), "
          f"{strong['target_classes']} target classes, epsilon {255 * strong['epsilon']:.2f}/255, batch "
          f"{result['batch']}; {result['threads']} threads, torch {result['torch']}, median of {result['repeats']}")
    print(f"{'model':<30} {'attack':<20} {'images':>6} {'clean ok':>8} {'robust %':>8} {'s':>8}")
    for row in result["rows"]:
        print(f"{row['model']:<30} {row['attack']:<20} {row['images']:>6} {row['correct_clean']:>8} "
              f"{row['robust_top1']:>8.1f} {row['seconds']:>8.1f}")
    print(f"the stronger attacks on both models: {result['strong_seconds']:.1f} s")


def arguments(parser):
    parser.add_argument("--profile", default="sample")
    parser.add_argument("--repeats", type=int, default=3)


if __name__ == "__main__":
    benchmarks.main(__file__, __doc__, arguments, run, print_table)
