"""The cpu-full AdvSimpleNet recipe search, on the tune split only (docs/cpu-full.md, "Choosing AdvSimpleNet's
recipe").

Every probe fine-tunes adversarially, for the profile's epoch budget, a SimpleNet that was itself trained without
the tune split (lib.data.tune), and is scored on the 1,000 tune images: clean top-1 and top-1 under the attack of
claim 14 (the reference harness's PGD-10 at 5.76/255), in IEEE fp32. No probe reads a validation image. The rule
(`choose`) was fixed before any probe ran: the highest top-1 under that attack; a probe within ACCURACY_MARGIN of
it that comes earlier in PROBES (closer to the reference's recipe) is preferred.

    python -m lib recipe-search --data-dir DIR     # trains what is missing, prints the probe table
"""
import torch

from lib.attacks.evaluation import evaluate_under_attack
from lib.attacks.pgd import PGDAttack
from lib.core.devices import precision_context, resolve_device
from lib.data import EvalTransform, load_split, tune_part
from lib.report.claims import ACCURACY_MARGIN
from lib.report.stats import describe
from lib.study.registry import ADVERSARIAL_TRAINING
from lib.study.resolve import attack_settings
from lib.study.runs import run

PROFILE = "cpu-full"
# The probes in the order of preference: the reference's crafting (epsilon 8/255, step 2/255) with an epsilon
# warm-up over half or all of the epoch, then half its epsilon without a warm-up (the recipe chosen earlier on
# validation images). One epoch each at lr 0.01: the profile's budget for a PGD-4 epoch (about 8 of the report's
# minutes on a 2-core CPU), fixed before any probe ran.
REFERENCE_CRAFTING = dict(ADVERSARIAL_TRAINING)
PROBES = {
    "8/255, warm-up 0.5 epoch": dict(REFERENCE_CRAFTING, ramp_epochs=0.5),
    "8/255, warm-up 1 epoch": dict(REFERENCE_CRAFTING, ramp_epochs=1),
    "4/255 (step 1/255), no warm-up": dict(REFERENCE_CRAFTING, epsilon=4 / 255, step_size=1 / 255),
}
EPOCHS, LR = 1, 0.01
SCORE_BATCH = 250


def probe_run(crafting, data_dir, device="auto", profile=PROFILE, **overrides):
    """The finished (trained or re-used) probe run of `crafting` (the adversarial setting); overrides: run()'s
    other arguments (results_dir; settings for a smaller test)."""
    return run("advsimplenet", profile, data_dir=data_dir, device=device, tune_split=True, epochs=EPOCHS, lr=LR,
               adversarial=crafting, init_from={"simplenet": {"tune_split": True}}, **overrides)


def tune_score(probe, device="auto"):
    """Clean and attacked top-1 (percent) of a probe's final model on its tune split, and the count of images:
    {'clean_acc1', 'adv_acc1', 'num_images'}, under the default attack (PGD-10 at 5.76/255), in IEEE fp32."""
    cfg = probe.config
    tune = tune_part(load_split(cfg["data_dir"], "train", cfg["image_size"]))
    loader = torch.utils.data.DataLoader(tune, batch_size=SCORE_BATCH)
    dev = resolve_device(device)
    attack = PGDAttack(**attack_settings()["default"])
    with precision_context("fp32", dev):
        result = evaluate_under_attack(probe.load_model(device=dev), loader, attack,
                                       EvalTransform(cfg["image_size"]).to(dev), dev)
    return {key: result[key] for key in ("clean_acc1", "adv_acc1", "num_images")}


def choose(scores):
    """The chosen probe's name: scores {name: tune_score} in PROBES order; the first whose attacked top-1 is
    within ACCURACY_MARGIN (in points) of the best."""
    best = max(score["adv_acc1"] for score in scores.values())
    return next(name for name, score in scores.items() if score["adv_acc1"] >= best - 100 * ACCURACY_MARGIN)


def probe_table(scores, chosen):
    """The probe table (markdown): each probe's tune-split top-1, clean and under attack, with 95% intervals."""
    rows = ["| probe | tune top-1, clean (%) | tune top-1 under PGD-10 at 5.76/255 (%) | chosen |",
            "|---|---|---|---|"]
    for name, score in scores.items():
        n = score["num_images"]
        clean, adv = (describe(round(score[key] * n / 100), n) for key in ("clean_acc1", "adv_acc1"))
        rows.append(f"| {name} | {clean} | {adv} | {'yes' if name == chosen else ''} |")
    return "\n".join(rows)


def search(data_dir, device="auto"):
    """Train the probes still missing, score each on the tune split (a line each, as it comes) and print the
    probe table and the choice (`python -m lib recipe-search`)."""
    scores = {}
    for name, crafting in PROBES.items():
        scores[name] = tune_score(probe_run(crafting, data_dir, device), device)
        print(f"probe {name}: tune top-1 {scores[name]['clean_acc1']:.1f}% clean, {scores[name]['adv_acc1']:.1f}% "
              f"under the attack (n = {scores[name]['num_images']:,})", flush=True)
    chosen = choose(scores)
    print(probe_table(scores, chosen))
    print(f"chosen: {chosen} (the highest tune top-1 under the attack, ties within "
          f"{100 * ACCURACY_MARGIN:g} point to the earlier probe)")
