"""The Findings section (notebook 05): every experiment's results gathered once, the claims ledger judged
(lib.report.claims, judge, rules), the project's own findings beside it, the results-at-a-glance table and the
provenance appendix.

`Evidence.gather` reads the runs and analyses the other sections produced (it trains nothing new when they ran
first); the functions below turn it into tables and facts for the notebook's sentence templates.
"""
import dataclasses
import time

import torch

from lib import attacks
from lib.core.errors import ConfigError
from lib.report import analysis, claims as ledger, findings, judge, measurements, prose, rules, stats, tables
from lib.report.sections import adversarial_samples, adversarial_training
from lib.study import REPORTED, describe_settings

ATTACKED = ("simplenet", "advsimplenet")  # the models evaluated under attack


@dataclasses.dataclass
class Evidence:
    """What the Findings are judged on. runs: {experiment: its first seed's run}; acc: {experiment:
    prose.accuracy_facts}; correct: {experiment: [per-image top-1 correctness, bool (n,), one per seed]};
    settings: the attacks (adversarial_samples.attack_settings); default: the default PGDAttack; per_seed:
    {model: [its analysis.under_attack summary per seed]}; compare: {'plain': SimpleNet's, 'adv': AdvSimpleNet's
    [analysis.attack_comparison per seed]} (clean, PGD, APGD-CE, APGD-T and worst case, bool (n_strong,)); costs:
    the step-cost measurements {'conv', 'vit', 'versus'} (lib.report.measurements); grid: SimpleNet's
    analysis.steps_grid rows."""
    study: object
    runs: dict
    acc: dict
    correct: dict
    settings: dict
    default: attacks.PGDAttack
    per_seed: dict
    compare: dict
    costs: dict = None
    grid: list = None

    @classmethod
    def gather(cls, study, attack=None):
        """The evidence of `study` (a lib.study.Study) under the notebook's `attack` overrides (/255 units)."""
        seeded = {name: study.runs(name) for name in REPORTED}
        probes = [name for name, group in seeded.items() if any(run.config.get("tune_split") for run in group)]
        if probes:
            raise ConfigError(f"{', '.join(probes)} trained with tune_split (a recipe search's probe, validated on "
                              "the tune split): the Findings judge runs trained on every training image. Drop "
                              "tune_split from the report's settings.")
        acc = {name: [prose.accuracy_facts(run, study.device) for run in group] for name, group in seeded.items()}
        settings, default = adversarial_samples.attack_settings(study.profile, study.dry_run, attack or {})
        per_seed = {name: [analysis.under_attack(run, default, settings["images"], device=study.device)
                           for run in seeded[name]] for name in ATTACKED}
        compare = adversarial_training.strong_comparisons(
            {"plain": seeded["simplenet"], "adv": seeded["advsimplenet"]}, settings, study.device)
        runs = {name: group[0] for name, group in seeded.items()}
        costs = {"conv": measurements.conv_costs(runs["simplenet"], runs["simplenet_custom"], device=study.device),
                 "vit": measurements.vit_costs(runs["vit"], runs["vit_global"], device=study.device),
                 "versus": measurements.cnn_vs_vit(runs["simplenet"], runs["vit"], device=study.device)}
        grid = analysis.steps_grid(runs["simplenet"], default, settings["grid_steps"], settings["grid_scales"],
                                   settings["images"], device=study.device)
        return cls(study, runs, {name: facts[0] for name, facts in acc.items()},
                   {name: [f["correct"] for f in facts] for name, facts in acc.items()},
                   settings, default, per_seed, compare, costs, grid)

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


def grid_cell(grid, steps, scale):
    """The row of a steps x epsilon grid with `steps` steps at `scale` x the default epsilon."""
    return next(row for row in grid if row["steps"] == steps and row["scale"] == scale)


def claim_parts(evidence):
    """Every claim of the ledger measured on this execution: {number: [rules.Part], or why it is not testable}."""
    runs, correct, costs = evidence.runs, evidence.correct, evidence.costs
    default_steps = evidence.default.num_steps
    attacked = {name: [analysis.correct(r["per_image"], when="adv") for r in group]
                for name, group in evidence.per_seed.items()}
    others = {runs[name].config["title"]: correct[name] for name in REPORTED if name != "resnet18"}
    return {
        1: judge.claim_1(costs["conv"]), 2: judge.claim_2(costs["conv"]), 3: judge.claim_3(correct),
        4: judge.claim_4(runs["simplenet"]),
        5: judge.claim_5(runs["resnet18"], {"resnet18": correct["resnet18"], **others},
                         runs["resnet18"].metrics.get("pretrained_source") == "imagenet"),
        6: judge.claim_6(runs["vit"]), 7: judge.claim_7(runs["vit"], runs["simplenet"]),
        8: judge.claim_8(costs["vit"], correct), 9: judge.claim_9(costs["versus"]),
        10: judge.claim_10(runs["vit"], runs["simplenet"]),
        11: judge.claim_11(evidence.per_seed["simplenet"][0]["per_image"]),
        12: judge.claim_12(evidence.per_seed["simplenet"][0]["per_image"]),
        13: judge.claim_13(grid_cell(evidence.grid, default_steps, 1),
                           grid_cell(evidence.grid, ledger.LONGER_ATTACK["steps"] * default_steps,
                                     ledger.LONGER_ATTACK["scale"])),
        14: judge.claim_14(attacked["advsimplenet"], attacked["simplenet"]),
        15: judge.claim_15(runs["simplenet"], runs["advsimplenet"]),
    }


def _holm_cell(judged, key):
    value = judged[f"holm_{key}"]
    return "–" if value is None else stats.format_p(value)


def outcome_table(judged):
    """Table F.2: every claim of the reference with this execution's outcome and the Holm-adjusted p values of the
    tests of support and of contradiction."""
    return tables.Table([{"": j["claim"].number, "claim of the reference report": j["claim"].claim,
                          "p support\n(Holm)": _holm_cell(j, "support"),
                          "p contradiction\n(Holm)": _holm_cell(j, "contra"), "outcome": j["outcome"]}
                         for j in judged],
                        "The reference report's claims and this execution's outcome: supported, contradicted, "
                        "inconclusive, or not testable in this profile. The p values are adjusted by Holm's method "
                        "over the claims with a test (a dash: decided by a single measurement, or not tested).", "F.2")


def ledger_table():
    """Table F.3: the ledger's declared rule of every claim: the quantity, the test and the threshold."""
    return tables.Table([{"": c.number, "quantity measured": c.quantity, "test": c.test, "threshold": c.threshold}
                         for c in ledger.CLAIMS],
                        "The claims ledger (lib/report/claims.py): for every claim the quantity this project "
                        "measures, the test and the threshold or margin, declared before any run was read.", "F.3")


def claim_list(judged):
    """A numbered Markdown list: each claim's outcome, what was measured against its threshold and, when
    inconclusive, how much more data would decide it; when not testable, why."""
    items = []
    for j in judged:
        claim = j["claim"]
        if not j["parts"]:
            text = f"Not testable here: {j['reason']}."
        else:
            text = "; ".join(map(judge.part_text, j["parts"])) + ". " + judge.more_data_text(j)
        items.append(f"{claim.number}. **{j['outcome'].capitalize()}**: {claim.claim} {text.strip()}")
    return "\n".join(items)


def forest_rows(judged):
    """The rows of the findings figure (plots.claims_forest): one per part of every judged claim,
    in the part's unit, with its 95% interval (a point for a single measurement) and its threshold(s)."""
    rows = []
    for j in judged:
        for part in j["parts"]:
            to_unit, _, _, axis = judge.UNITS[part.unit]
            low, high = part.effect.interval()
            rows.append(dict(label=f"{j['claim'].number}. {part.name} ({axis})",
                             estimate=to_unit(part.effect.estimate), low=to_unit(low), high=to_unit(high),
                             outcome=j["outcome"],
                             thresholds=[to_unit(t) for t in ((-part.threshold, part.threshold)
                                                              if part.kind == "within" else (part.threshold,))]))
    return rows


def outcome_counts(judged):
    """Facts: how many claims there are (claims) and how many reached each outcome (supported, contradicted,
    inconclusive, untestable); tested, the size of the Holm families; alpha, their family-wise level."""
    count = {outcome: sum(j["outcome"] == outcome for j in judged) for outcome in rules.OUTCOMES}
    return dict(claims=len(judged), supported=count[rules.SUPPORTED], contradicted=count[rules.CONTRADICTED],
                inconclusive=count[rules.INCONCLUSIVE], untestable=count[rules.NOT_TESTABLE],
                tested=sum(j["holm_support"] is not None for j in judged), alpha=rules.ALPHA)


def project_findings(evidence):
    """Facts on the project's own findings beside the reference's claims: worst (AdvSimpleNet against SimpleNet
    under the worst case of every attack), clean (the same without attack: adversarial training's cost in clean
    accuracy), strong (the worst case in words)."""
    default = evidence.default
    return dict(worst=findings.describe_seeds(evidence.adversarial_training(), "AdvSimpleNet", "SimpleNet"),
                clean=findings.describe_seeds(evidence.adversarial_training("clean"), "AdvSimpleNet", "SimpleNet"),
                strong=f"the worst case of PGD-{default.num_steps}, APGD-CE and APGD-T on each of "
                       f"{evidence.n_strong:,} images")


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
