"""The Findings section's tables and facts (lib.report.sections.summary) on constructed evidence."""
import types

import numpy as np
import pytest

pytest.importorskip("IPython")  # lib.report.prose displays Markdown

from lib.attacks import PGDAttack
from lib.attacks.evaluation import summarise
from lib.report import findings
from lib.report.sections import summary
from lib.study import REPORTED, Study


def fake_run(title, epochs, image_size=64, train_images=None, seed=0):
    config = dict(title=title, epochs=epochs, image_size=image_size, train_images=train_images, seed=seed,
                  val_images=None, data_dir="", data_name="the embedded sample")
    provenance = dict(device="cpu (test)", train_time_s=12.5, images_per_s=100.0, git_commit="0123456789abcdef",
                      amp="off", torch="2.x", finished_at="2026-12-02T05:00:00+00:00", processes=1)
    return types.SimpleNamespace(config=config, metrics=dict(epochs=epochs, provenance=provenance))


def fake_acc(correct):
    return dict(n=len(correct), correct=np.asarray(correct, bool), epochs=2, top1_cell="50.0 [1, 99]",
                top5_cell="75.0 [1, 99]")


def attacked(clean, adv):
    """An analysis.under_attack summary of a targeted attack: per-image ranks (0: right), targets and norms."""
    clean_rank, adv_rank = np.where(clean, 0, 7), np.where(adv, 0, 7)
    per_image = dict(clean_rank=clean_rank, adv_rank=adv_rank, target=np.full(len(clean), 3),
                     adv_top5=np.tile(np.arange(5), (len(clean), 1)), linf=np.zeros(len(clean)),
                     l2=np.zeros(len(clean)), mse=np.full(len(clean), 1e-4))
    return {**summarise(per_image), "per_image": per_image, "index": np.arange(len(clean))}


@pytest.fixture
def evidence():
    many, few = [True] * 60 + [False] * 40, [True] * 10 + [False] * 90
    runs = {name: fake_run(name.title(), epochs=2) for name in REPORTED}
    acc = {name: fake_acc(many if name == "improvednet" else few) for name in REPORTED}
    compare = {"plain": [{"clean": np.array(few, bool), "PGD-10": np.array(few, bool),
                          "worst case": np.zeros(100, bool)}],
               "adv": [{"clean": np.array(many, bool), "PGD-10": np.array(many, bool),
                        "worst case": np.array(many, bool)}]}
    per_seed = {"simplenet": [attacked(np.array(few), np.zeros(100, bool))],
                "advsimplenet": [attacked(np.array(many), np.array(many))]}
    return summary.Evidence(Study("smoke"), runs, acc, {name: [a["correct"]] for name, a in acc.items()}, {},
                            PGDAttack(num_steps=10, step_size=0.2 / 255, epsilon=2 / 255), per_seed, compare)


def test_pairs_compare_experiments_image_by_image(evidence):
    pair, = evidence.pairs("improvednet", "simplenet")
    assert pair["n"] == 100 and pair["difference"] == pytest.approx(0.5)
    worst, = evidence.adversarial_training()
    assert worst["difference"] == pytest.approx(0.6)
    assert evidence.n_strong == 100


def test_glance_table_has_a_row_per_experiment_and_per_attacked_model(evidence):
    table = summary.glance_table(evidence)
    labels = [row[0] for row in table.body]
    assert labels[:len(REPORTED)] == [run.config["title"] for run in evidence.runs.values()]
    assert labels[-2:] == ["Simplenet under attack", "Advsimplenet under attack"]
    assert "PGD-10, epsilon 2.00/255" in table.caption and table.number == "F.1"


def test_scale_facts_name_what_is_reduced(evidence):
    facts = summary.scale_facts(evidence)
    assert facts["size"] == 64 and facts["profile"] == "smoke"
    assert facts["scale"] == "with smaller images and fewer epochs, this profile's accuracies are expected to be lower"


def test_seeds_table_only_with_several_seeds(evidence):
    assert summary.seeds_table(evidence) is None
    evidence.study = Study("smoke", seeds=2)
    evidence.correct["simplenet"].append(np.ones(100, bool))
    table = summary.seeds_table(evidence)
    assert [row[0] for row in table.body] == ["Simplenet"]


def test_overstatement_facts_say_when_pgd_overstated(evidence):
    facts = summary.overstatement_facts(evidence)
    assert facts["plain"].startswith("PGD-10 overstated SimpleNet's robustness")
    assert facts["adv"].startswith("The worst case did not lower AdvSimpleNet's top-1")


def test_outcome_and_ledger_tables_list_every_claim():
    from tests.report.test_judge import measured_parts
    from lib.report import judge
    judged = judge.judge({**measured_parts(True), 5: "offline"})
    table = summary.outcome_table(judged)
    assert [row[0] for row in table.body] == [str(n) for n in range(1, 16)] and table.number == "F.2"
    assert table.body[4][-1] == "not testable in this profile" and table.body[4][2] == "–"
    assert table.body[0][2] == "–" and table.body[1][2] != "–"  # claim 1: a single measurement, not in Holm
    assert len(summary.ledger_table().body) == 15
    counts = summary.outcome_counts(judged)
    assert (counts["claims"], counts["supported"], counts["untestable"]) == (15, 14, 1)
    assert counts["tested"] == 15 - 1 - 3  # claims 1, 7 and 15 are single measurements
    listed = summary.claim_list(judged)
    assert listed.count("\n") == 14 and "5. **Not testable in this profile**" in listed and "Not testable here: offline." in listed
    rows = summary.forest_rows(judged)
    assert len(rows) == sum(len(j["parts"]) for j in judged)
    assert rows[1]["thresholds"] == [pytest.approx(1.05)] and rows[1]["low"] < rows[1]["estimate"] < rows[1]["high"]


def test_provenance_tables_one_row_per_run(evidence):
    training, software = summary.training_table(evidence.runs), summary.software_table(evidence.runs)
    assert len(training.body) == len(software.body) == len(REPORTED)
    assert training.header[1:4] == ["epochs", "seed", "image size"] and training.body[0][4] == "12.5"
    assert software.body[0][1] == "0123456789" and software.body[0][-1] == "2026-12-02T05:00"


def test_build_facts_mark_a_dry_run():
    facts = summary.build_facts(Study("smoke", dry_run=True))
    assert facts["dry"].startswith(", as a dry run") and "DRY RUN" in facts["settings"]
    assert summary.build_facts(Study("smoke"))["dry"] == ""
