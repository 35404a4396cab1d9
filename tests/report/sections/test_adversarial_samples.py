"""Section 4's facts and tables (lib.report.sections.adversarial_samples) on small constructed attack results."""
import math

import numpy as np
import pytest

pytest.importorskip("IPython", reason="the report's prose displays through the Jupyter stack")

from lib import data  # noqa: E402
from lib.attacks import PGDAttack  # noqa: E402
from lib.report import findings, stats  # noqa: E402
from lib.report.sections import adversarial_samples as section  # noqa: E402
from tests.conftest import attack_summary  # noqa: E402 (after the skip)


ATTACK = PGDAttack(10, step_size=0.8 / 255, epsilon=8 / 255)


class FakeRun:
    """A finished SimpleNet run as the section reads it: its configuration and provenance."""
    config = {"epochs": 3, "image_size": 32, "data_dir": str(data.SAMPLE_ROOT)}
    metrics = {"provenance": {"device": "cpu"}}


def test_attack_settings_apply_the_notebook_overrides_to_the_default_attack():
    settings, default = section.attack_settings("smoke", False, {"epsilon": 4, "steps": 5})
    assert isinstance(default, PGDAttack) and default.num_steps == 5
    assert default.epsilon == pytest.approx(4 / 255) == settings["default"]["epsilon"]
    assert default.step_size == pytest.approx(4 / 255 / 5) and settings["strong"]["epsilon"] == default.epsilon


def test_setting_facts_describe_the_run_and_the_attack(monkeypatch):
    monkeypatch.setattr(section.analysis, "predictions", lambda run, device="auto": {"label": np.zeros(48)})
    facts = section.setting_facts(FakeRun(), ATTACK, attack_summary([True] * 16, [False] * 16), "smoke")
    assert facts["n"] == 16 and facts["val_size"] == 48 and facts["epochs"] == 3 and facts["size"] == 32
    assert facts["epsilon"] == pytest.approx(8) and facts["step"] == pytest.approx(0.8) and facts["steps"] == 10
    assert facts["hardware"] == "cpu" and facts["data"].startswith("the embedded sample")


def test_the_harness_attack_in_pixel_units_per_channel():
    facts = section.harness_attack_facts()
    per_channel = [float(value) for value in facts["per_channel"].split(", ")]
    assert per_channel == pytest.approx([255 * facts["norm_epsilon"] * s for s in data.IMAGENET_STD], abs=0.005)
    assert len(facts["std"]) == 3 and facts["norm_steps"] == 10


def test_accuracy_table_has_a_row_without_and_with_the_attack_beside_the_reference():
    result = attack_summary([True] * 6 + [False] * 4, [True] + [False] * 9, hits=7)
    table = section.accuracy_table(result, ATTACK, "4.1")
    assert table.header == ["", "top-1 (%)\n[95% CI]", "top-5 (%)\n[95% CI]", "reference\ntop-1 (%)",
                            "reference\ntop-5 (%)"]
    assert [row[0] for row in table.body] == ["without attack", "PGD-10, epsilon 8.00/255"]
    assert table.body[0][1] == stats.interval_cell(6, 10) and table.body[1][1] == stats.interval_cell(1, 10)
    assert table.body[1][3] == f"{findings.REFERENCE_ATTACKED['simplenet'][0]:.2f}"
    assert "n = 10 attacked" in table.caption and table.number == "4.1"


def test_drop_facts_compare_clean_and_attacked_on_the_same_images():
    facts = section.drop_facts(attack_summary([True] * 40 + [False] * 60, [False] * 100))
    assert facts["kept"] == "here the attacked top-1 is 0% of the clean top-1."
    assert "clean minus attacked: +40.0 points" in facts["drop"] and "clean is more accurate" in facts["drop"]
    assert facts["reference_clean"] == findings.REFERENCE["simplenet"][1]


def test_strong_attack_facts_name_each_attack_and_the_worst_case():
    ok = lambda right: np.arange(20) < right  # noqa: E731
    compare = {"clean": ok(10), "PGD-10": ok(6), "APGD-CE": ok(4), "APGD-T (DLR)": ok(5), "worst case": ok(3)}
    facts = section.strong_attack_facts(compare, {"num_steps": 5})
    assert facts["pgd_name"] == "PGD-10" and facts["n"] == 20 and facts["steps"] == 5
    assert facts["ce"] == stats.describe(4, 20) and facts["worst"] == stats.describe(3, 20)


def test_example_captions_and_counts():
    shown = {"label": np.array([0, 1]), "clean_pred": np.array([0, 2]), "adv_pred": np.array([3, 2]),
             "target": np.array([3, 5])}
    captions = section.example_captions(shown, data.SAMPLE_ROOT)
    assert captions[0] == ("true: abbey\npred: abbey", "pred: amusement_park\ntarget: amusement_park")
    assert section.example_facts(shown) == dict(shown=2, target=1, changed=1, right=1, right_adversarial=0)


def test_perturbation_l2_is_a_share_of_a_full_epsilon_change():
    result = attack_summary([True] * 4, [False] * 4, linf=8 / 255, l2=0.5, mse=1e-4)
    facts = section.perturbation_facts(result, ATTACK, 32)
    full = 8 / 255 * math.sqrt(3 * 32 * 32)
    assert facts["full_l2"] == pytest.approx(full) and facts["share"] == pytest.approx(0.5 / full)
    assert facts["psnr"] == pytest.approx(40) and facts["side"] == "below" and facts["linf"] == pytest.approx(8)
    table = section.perturbation_table(result, ATTACK, 32, "4.2")
    assert len(table.body) == 1 and table.body[0][3] == f"{full:.2f}" and table.body[0][4] == "40.00"


def grid(hits):
    """A steps grid on 10 images: hits[(steps, scale)] images reach the target."""
    return [{"steps": steps, "scale": scale, "epsilon": scale * 8 / 255,
             **attack_summary([True] * 10, np.arange(10) >= k, hits=k)} for (steps, scale), k in hits.items()]


def test_grid_table_has_a_row_per_steps_and_a_column_per_epsilon():
    rows = grid({(5, 0.5): 1, (5, 1): 2, (10, 0.5): 3, (10, 1): 8})
    table = section.grid_table(rows, "4.3")
    assert table.header == ["steps", "4.00/255", "8.00/255"]
    assert table.body == [["5", "10.0 / 40.0", "20.0 / 40.0"], ["10", "30.0 / 40.0", "80.0 / 40.0"]]


def test_grid_facts_compare_fewest_with_most_steps_at_each_epsilon():
    facts = section.grid_facts(grid({(5, 0.5): 1, (5, 1): 2, (10, 0.5): 3, (10, 1): 8}), PGDAttack(5, 1 / 255, 8 / 255))
    assert facts["fewest"] == 5 and facts["most"] == 10
    assert facts["by_epsilon"].startswith("+20.0 points") and "+60.0 points" in facts["by_epsilon"]
    assert facts["by_epsilon"].endswith("at epsilon 8.00/255")
    assert facts["trade"].startswith("Trading epsilon for iterations, 5 steps at epsilon 8.00/255")  # 10 x 0.5 too


def test_curve_table_has_a_row_per_epsilon_and_the_end_of_the_curve():
    curve = [{"epsilon": eps / 255, **attack_summary([True] * 8 + [False] * 2, np.arange(10) < right, hits=10 - right)}
             for eps, right in ((1, 7), (4, 2))]
    table = section.curve_table(curve, "4.4")
    assert [row[0] for row in table.body] == ["1", "4"] and table.body[1][1] == stats.interval_cell(2, 10)
    assert table.body[1][3] == stats.interval_cell(8, 10)
    facts = section.curve_end_facts(curve)
    assert facts["epsilon"] == pytest.approx(4) and facts["adv1_text"] == stats.describe(2, 10)
    assert facts["drop"].startswith("Clean minus attacked: +60.0 points")
