"""The Findings section (notebook 05): every experiment's results gathered once, the verdicts on the reference's
findings, the results-at-a-glance table and the provenance appendix.

`Evidence.gather` reads the runs and analyses the other sections produced (it trains nothing new when they ran
first); the functions below turn it into tables and facts for the notebook's sentence templates.
"""
import dataclasses
import time

import torch

from lib import attacks
from lib.report import analysis, findings, measurements, prose, stats, tables
from lib.report.sections import adversarial_samples, adversarial_training
from lib.study import REPORTED, describe_settings

ATTACKED = ("simplenet", "advsimplenet")  # the models evaluated under attack


@dataclasses.dataclass
class Evidence:
    """What the Findings are judged on. runs: {experiment: its first seed's run}; acc: {experiment:
    prose.accuracy_facts}; correct: {experiment: [per-image top-1 correctness, bool (n,), one per seed]};
    settings: the attacks (adversarial_samples.attack_settings); default: the default PGDAttack; per_seed:
    {model: [its analysis.under_attack summary per seed]}; compare: {'plain': SimpleNet's, 'adv': AdvSimpleNet's
    [analysis.attack_comparison per seed]} (clean, PGD, APGD-CE, APGD-T and worst case, bool (n_strong,))."""
    study: object
    runs: dict
    acc: dict
    correct: dict
    settings: dict
    default: attacks.PGDAttack
    per_seed: dict
    compare: dict

    @classmethod
    def gather(cls, study, attack=None):
        """The evidence of `study` (a lib.study.Study) under the notebook's `attack` overrides (/255 units)."""
        seeded = {name: study.runs(name) for name in REPORTED}
        acc = {name: [prose.accuracy_facts(run, study.device) for run in group] for name, group in seeded.items()}
        settings, default = adversarial_samples.attack_settings(study.profile, study.dry_run, attack or {})
        per_seed = {name: [analysis.under_attack(run, default, settings["images"], device=study.device)
                           for run in seeded[name]] for name in ATTACKED}
        compare = adversarial_training.strong_comparisons(
            {"plain": seeded["simplenet"], "adv": seeded["advsimplenet"]}, settings, study.device)
        return cls(study, {name: group[0] for name, group in seeded.items()},
                   {name: facts[0] for name, facts in acc.items()},
                   {name: [f["correct"] for f in facts] for name, facts in acc.items()},
                   settings, default, per_seed, compare)

    @property
    def n_strong(self):
        """The number of images the strong attacks were evaluated on."""
        return len(self.compare["plain"][0]["clean"])

    def pairs(self, a, b):
        """Paired top-1 comparisons of experiments a and b on the validation set, one per seed (i with i)."""
        return stats.paired_by_seed(self.correct[a], self.correct[b])

    def adversarial_training(self, when="worst case"):
        """Paired top-1 comparisons of AdvSimpleNet (A) and SimpleNet (B) on the strong attacks' images, one per
        seed: clean (when="clean") or under the worst case of every attack evaluated."""
        return [stats.paired_difference(a[when], p[when]) for a, p in zip(self.compare["adv"], self.compare["plain"])]


def scale_facts(evidence):
    """Facts on this execution's scale against the reference's: profile, data, size, hardware and scale, a
    clause saying whether accuracies can be compared with the reference's."""
    cfg, study = evidence.runs["simplenet"].config, evidence.study
    shorter = any(run.config["epochs"] < (findings.REFERENCE[name][0] or 0) for name, run in evidence.runs.items())
    reduced = " and ".join(what for what, applies in (("fewer images", cfg["train_images"] is not None),
                                                      ("smaller images", cfg["image_size"] < 128),
                                                      ("fewer epochs", shorter)) if applies)
    return dict(profile=study.profile, data=prose.dataset_name(cfg), size=cfg["image_size"],
                hardware=evidence.runs["simplenet"].metrics["provenance"]["device"],
                scale=(f"with {reduced}, this profile's accuracies are expected to be lower" if reduced else
                       "at the reference's scale, its accuracies can be compared with the reference's"))


def glance_table(evidence):
    """Table F.1: every experiment's validation top-1 / top-5 with intervals beside the reference's, and the
    attacked models under the default attack."""
    n, default = evidence.acc["simplenet"]["n"], evidence.default
    rows = [{"experiment": evidence.runs[name].config["title"], "epochs": acc["epochs"], "images": n,
             "top-1 (%)\n[95% CI]": acc["top1_cell"], "top-5 (%)\n[95% CI]": acc["top5_cell"],
             **findings.reference_cells(name)} for name, acc in evidence.acc.items()]
    attacked = {name: prose.attack_facts(group[0]) for name, group in evidence.per_seed.items()}
    n_attacked = attacked["simplenet"]["n"]
    rows += [{"experiment": f"{evidence.runs[name].config['title'].split(' (')[0]} under attack", "epochs": None,
              "images": n_attacked, "top-1 (%)\n[95% CI]": a["adv1_cell"], "top-5 (%)\n[95% CI]": a["adv5_cell"],
              **findings.reference_cells(name, attacked=True)} for name, a in attacked.items()]
    return tables.Table(rows, f"Every experiment: validation top-1 and top-5 of this execution with 95% intervals, "
                        f"and the reference report's numbers. The attacked rows use the default attack "
                        f"(PGD-{default.num_steps}, epsilon {255 * default.epsilon:.2f}/255, least-likely target) on "
                        f"{n_attacked:,} evenly spaced validation images.", "F.1")


def seeds_table(evidence):
    """Table F.3, every training seed's top-1 of the seeded experiments; None with one seed per experiment."""
    if evidence.study.seed_count == 1:
        return None
    return tables.Table([stats.seeds_row(evidence.runs[name].config["title"], correct)
                         for name, correct in evidence.correct.items() if len(correct) > 1],
                        "Validation top-1 of every training seed of the experiments behind the comparisons (each "
                        "with its 95% Wilson interval), and the mean over the seeds with their standard deviation "
                        "and range. Table F.1 shows the first seed.", "F.3")


def verdicts(evidence):
    """The six verdicts on the reference's findings (lib.report.findings.judge_*), in the reference's order."""
    runs, device, default = evidence.runs, evidence.study.device, evidence.default
    collapse = [stats.paired_difference(f["clean1"], f["adv1"])
                for f in map(prose.attack_facts, evidence.per_seed["simplenet"])]
    return [
        findings.judge_custom_conv(measurements.conv_costs(runs["simplenet"], runs["simplenet_custom"],
                                                           device=device)),
        findings.judge_better(evidence.pairs("improvednet", "simplenet"), "ImprovedNet", "SimpleNet",
                              "The BatchNorm CNN (ImprovedNet) is more accurate than SimpleNet."),
        findings.judge_resnet_best({"SimpleNet": evidence.pairs("resnet18", "simplenet"),
                                    "ImprovedNet": evidence.pairs("resnet18", "improvednet")},
                                   runs["resnet18"].metrics.get("pretrained_source") == "imagenet"),
        findings.judge_window_attention(measurements.vit_costs(runs["vit"], runs["vit_global"], device=device),
                                        evidence.pairs("vit", "vit_global")),
        findings.judge_collapse(evidence.per_seed["simplenet"], collapse),
        findings.judge_adversarial_training(
            evidence.adversarial_training(), evidence.adversarial_training("clean"),
            f"the strongest attack evaluated (the worst case of PGD-{default.num_steps}, APGD-CE and APGD-T on each "
            f"of {evidence.n_strong:,} images)"),
    ]


def verdict_table(judged):
    """Table F.2: each finding of the reference report beside this execution's verdict."""
    return tables.Table([{"": i + 1, "finding of the reference report": v["finding"], "this execution": v["verdict"]}
                         for i, v in enumerate(judged)],
                        "The reference report's findings and this execution's verdict: reproduced, not reproduced "
                        "(including differences this execution cannot tell apart at its n), or not testable in this "
                        "profile.", "F.2")


def overstatement_facts(evidence):
    """Facts plain and adv: whether the default PGD overstated SimpleNet's and AdvSimpleNet's robustness against
    the worst case of every attack (findings.pgd_overstatement, over seeds)."""
    pgd = list(evidence.compare["plain"][0])[1]
    return {key: findings.pgd_overstatement(pairs, adversarial_training.NAMES[key], pgd, "the worst case")
            for key, pairs in adversarial_training.pgd_against_worst(evidence.compare).items()}

def build_facts(study, attack=None):
    """Facts on this build: time (local, to the minute), torch version, profile, dry (a dry run's clause) and
    settings (lib.study.describe_settings)."""
    return dict(time=time.strftime("%Y-%m-%d %H:%M %Z"), torch=torch.__version__, profile=study.profile,
                dry=", as a dry run (training and evaluations capped)" if study.dry_run else "",
                settings=describe_settings(study.profile, study.overrides, attack, study.dry_run, study.seeds))


def training_table(runs):
    """Table A.1: how every run trained (epochs, seed, image size, time, throughput, data set)."""
    return tables.Table([{"experiment": run.config["title"], "epochs": run.metrics["epochs"], "seed": run.config["seed"],
                          "image size": run.config["image_size"],
                          "train time (s)": run.metrics["provenance"]["train_time_s"],
                          "train images / s": run.metrics["provenance"]["images_per_s"],
                          "data set": prose.dataset_label(run.config)} for run in runs.values()],
                        "Training of every run: epochs, seed, image size, training time (without validation), "
                        "training throughput and the data set by name (with the training / validation images used, "
                        "when a subset).", "A.1", digits={"train time (s)": 1, "train images / s": 0})


def software_table(runs):
    """Table A.2: the code version, device, processes, precision and torch of every run."""
    def row(run):
        made = run.metrics["provenance"]
        return {"experiment": run.config["title"], "commit": prose.short_commit(made["git_commit"]),
                "device": made["device"], "processes": made.get("processes", 1), "amp": made.get("amp"),
                "torch": made["torch"], "finished": made["finished_at"][:16]}
    return tables.Table([row(run) for run in runs.values()],
                        "Code and software of every run: git commit of the project when the run trained (+: with "
                        "uncommitted changes), device, number of training processes, mixed precision (bf16 autocast "
                        "or off), torch version and the time it finished.", "A.2")
