"""Section 5's facts and tables (lib.report.sections.adversarial_training) on small constructed runs and results."""
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("IPython", reason="the report's prose displays through the Jupyter stack")

from lib import data  # noqa: E402
from lib.attacks import PGDAttack  # noqa: E402
from lib.report import findings, stats  # noqa: E402
from lib.report.sections import adversarial_training as section  # noqa: E402
from tests.conftest import attack_summary  # noqa: E402 (after the skip)


DEFAULT = PGDAttack(10, step_size=0.8 / 255, epsilon=8 / 255)


class FakeRun:
    """A finished run as the section reads it: configuration, provenance and the trainer's per-epoch log."""

    def __init__(self, epochs, seconds, rate, mib, adversarial=None, device="cpu", lr=0.01):
        self.config = dict(epochs=epochs, image_size=32, data_dir=str(data.SAMPLE_ROOT), batch_size=16, lr=lr,
                           weight_decay=5e-4, warmup_epochs=1, optimizer="sgd", init_from=None,
                           adversarial=adversarial)
        self.metrics = {"provenance": {"device": device, "train_time_s": seconds, "images_per_s": rate,
                                       "peak_memory_mb": mib, "amp": None}}
        self.history = pd.DataFrame({"train_acc1": [10.0, 25.0], "train_clean_acc1": [20.0, 40.0],
                                     "val_acc1": [5.0, 12.5], "train_images": [200, 200], "val_images": [40, 40]})


def runs(**adv):
    return {"plain": FakeRun(2, 10.0, 100.0, 50.0),
            "adv": FakeRun(4, 80.0, 25.0, 75.0, adversarial=dict(num_steps=3, step_size=2 / 255, epsilon=6 / 255),
                           **adv)}


def results():
    """SimpleNet right on 8 of 10 images clean and 0 attacked; AdvSimpleNet on 6 clean and 5 attacked."""
    return {"plain": attack_summary(np.arange(10) < 8, [False] * 10, hits=9),
            "adv": attack_summary(np.arange(10) < 6, np.arange(10) < 5, hits=2)}


def test_setting_and_crafting_facts_describe_both_runs(monkeypatch):
    monkeypatch.setattr(section.analysis, "predictions", lambda run, device="auto": {"label": np.zeros(48)})
    setting = section.setting_facts(runs(device="cuda"), results(), "smoke")
    assert setting["plain_epochs"] == "2 epochs" and setting["adv_epochs"] == "4 epochs" and setting["n"] == 10
    assert setting["plain_device"] == "cpu" and setting["adv_device"] == "cuda" and setting["val_size"] == 48
    crafting = section.crafting_facts(runs(lr=0.02))
    assert crafting["steps"] == 3 and crafting["epsilon"] == pytest.approx(6) and crafting["step"] == pytest.approx(2)
    assert crafting["differences"] == "It differs from this profile's SimpleNet in lr."
    assert crafting["precision"] == "IEEE fp32" and crafting["start"].startswith("It starts from random weights")
    assert crafting["ramp"] == ""


def test_last_epoch_facts_turn_the_logged_accuracies_into_counts():
    facts = section.last_epoch_facts(runs())
    assert facts["adversarial"] == stats.describe(50, 200) and facts["clean"] == stats.describe(80, 200)
    assert facts["val"] == stats.describe(5, 40) and facts["plain_val"] == stats.describe(5, 40)
    assert facts["plain_epochs"] == "2 epochs" and facts["chance"] == 100 / data.NUM_CLASSES


def test_robustness_table_has_a_column_per_model_beside_the_reference():
    table = section.robustness_table(runs(), results(), DEFAULT, "5.1")
    assert table.header == ["model", "SimpleNet", "AdvSimpleNet"]
    rows = {row[0]: row[1:] for row in table.body}
    assert rows["epochs"] == ["2", "4"]
    assert rows["attacked top-1 (%)\n[95% CI]"] == [stats.interval_cell(0, 10), stats.interval_cell(5, 10)]
    assert rows["reference attacked\ntop-1 (%)"] == [f"{findings.REFERENCE_ATTACKED[name][0]:.1f}"
                                                     for name in ("simplenet", "advsimplenet")]
    assert "PGD-10, epsilon 8.00/255" in table.caption


def test_model_pairs_are_advsimplenet_minus_simplenet_clean_and_attacked():
    pairs = section.model_pairs(results())
    assert pairs["clean"]["difference"] == pytest.approx(-0.2) and (pairs["clean"]["b"], pairs["clean"]["c"]) == (0, 2)
    assert pairs["adv"]["difference"] == pytest.approx(0.5) and pairs["adv"]["b"] == 5
    table = section.pairs_table(results(), "5.2")
    assert [row[0] for row in table.body] == ["without attack", "under attack"]
    facts = section.robustness_facts(results(), DEFAULT)
    assert facts["adv_adv1_text"] == stats.describe(5, 10) and facts["plain_clean1_text"] == stats.describe(8, 10)
    assert facts["under_attack"].startswith("AdvSimpleNet minus SimpleNet: +50.0 points")


def test_curve_facts_give_the_difference_at_each_epsilon():
    curves = {key: [{"epsilon": eps / 255, **results()[key]} for eps in (2, 8)] for key in ("plain", "adv")}
    facts = section.curve_facts(curves)
    assert facts["differences"].count("+50.0 points") == 2 and facts["differences"].endswith("at 8/255")
    assert facts["ahead"].startswith("At none of these epsilons")  # 5 discordant images: p = 0.0625


def comparison(right):
    """An attack comparison on 20 images: right[name] images (the first ones) classified correctly."""
    return {name: np.arange(20) < k for name, k in right.items()}


def compare(seeds=2):
    plain = dict(clean=16, **{"PGD-10": 8, "APGD-CE": 2, "APGD-T (DLR)": 3, "worst case": 1})
    adv = dict(clean=12, **{"PGD-10": 10, "APGD-CE": 9, "APGD-T (DLR)": 8, "worst case": 8})
    return {"plain": [comparison(plain)] * seeds, "adv": [comparison(adv)] * seeds}


def test_strong_attack_table_has_a_column_per_model_and_seed():
    table = section.strong_attack_table(compare(), {"num_steps": 5, "restarts": 1, "target_classes": 9,
                                                    "epsilon": 8 / 255}, "5.4")
    assert table.header == ["model", "SimpleNet, seed 1", "SimpleNet, seed 2", "AdvSimpleNet, seed 1",
                            "AdvSimpleNet, seed 2"]
    assert [row[0] for row in table.body] == [f"{name} top-1 (%)\n[95% CI]" for name in compare()["plain"][0]]
    assert table.body[-1][1:] == [stats.interval_cell(1, 20)] * 2 + [stats.interval_cell(8, 20)] * 2
    assert "default PGD-10" in table.caption and "epsilon 8.00/255" in table.caption
    one = section.strong_attack_table(compare(1), {"num_steps": 5, "restarts": 1, "target_classes": 9,
                                                   "epsilon": 8 / 255}, "5.4")
    assert one.header == ["model", "SimpleNet", "AdvSimpleNet"]


def test_pgd_against_the_worst_case_per_model_and_seed():
    pairs = section.pgd_against_worst(compare())
    assert [pair["difference"] for pair in pairs["plain"]] == pytest.approx([0.35, 0.35])
    assert pairs["adv"][0]["b"] == 2 and pairs["adv"][0]["c"] == 0
    table = section.overstatement_table(compare(), "5.5")
    assert [row[0] for row in table.body] == ["SimpleNet, seed 1", "SimpleNet, seed 2", "AdvSimpleNet, seed 1",
                                              "AdvSimpleNet, seed 2"]
    assert table.body[0][1].startswith("+35.0")
    facts = section.worst_case_facts(compare(), DEFAULT)
    assert facts["plain"] == stats.describe(1, 20) and facts["adv"] == stats.describe(8, 20)
    assert facts["first"] == " (first seed)" and facts["steps"] == 10 and facts["n"] == 20
    assert facts["plain_overstated"].startswith("PGD-10 overstated SimpleNet's robustness")  # 7 vs 0 images
    assert facts["adv_overstated"].startswith("The worst case did not lower AdvSimpleNet's top-1")  # 2 vs 0
    assert "over 2 training seeds" in facts["verdict"]


def test_training_costs_and_their_ratio():
    cost = section.training_costs(runs())
    assert cost["plain"]["epoch"] == 5.0 and cost["adv"]["epoch"] == 20.0
    assert cost["ratio"] == pytest.approx({"epoch": 4.0, "rate": 0.25, "mib": 1.5})
    table = section.training_cost_table(runs(), "5.3")
    assert table.header == ["model", "epochs", "train time (s)", "s / epoch", "train images / s", "peak memory (MiB)"]
    assert [row[0] for row in table.body] == ["SimpleNet", "AdvSimpleNet", "AdvSimpleNet / SimpleNet"]
    assert table.body[2][3:] == ["4.00x", "0.25x", "1.50x"]  # ratios keep two decimals whatever the column's
    facts = section.cost_facts(runs())
    assert facts["ratio_epoch"] == 4.0 and facts["steps"] == 3 and facts["expected"] == 4 and facts["below"] == ""
    assert facts["devices"] == "Both runs trained on the same device; "
