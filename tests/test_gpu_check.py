"""benchmarks/gpu_check.py: its CPU-testable parts (no GPU here; the CUDA path runs under `make gpu-check`)."""
import json

import pytest
import torch

from benchmarks import gpu_check
from lib import experiments


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_without_cuda_it_says_so_in_one_line_and_exits_0(capsys):
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA GPU" in out[0]


def test_capped_epochs_on_cpu_measure_and_project(capsys, tmp_path):
    status = gpu_check.main(["--device", "cpu", "--profile", "smoke", "--steps", "1", "--experiments",
                             "simplenet", "advsimplenet", "--amp", "off", "--channels-last", "off", "on",
                             "--json", str(tmp_path / "check.json")])
    assert status == 0
    result = json.loads((tmp_path / "check.json").read_text())
    rows = result["rows"]
    assert [(r["experiment"], r["channels_last"]) for r in rows] == [
        ("simplenet", False), ("simplenet", True), ("advsimplenet", False), ("advsimplenet", True)]
    for row in rows:
        assert row["train images/s"] > 0 and row["val images/s"] > 0 and row["peak MiB"] > 0
        epochs = experiments.config(row["experiment"], "full")["epochs"]
        assert row["projected min"] == pytest.approx(
            epochs * (100_000 / row["train images/s"] + 10_000 / row["val images/s"]) / 60)
    assert result["totals"] is None  # not every experiment was measured: no whole-study figure
    out = capsys.readouterr().out
    assert "| advsimplenet | off | True |" in out and "On paper, 100 TFLOP/s" in out


def test_study_totals_use_the_registry_setting_and_the_fastest_one():
    settings = (("bf16", False, 2.0), ("bf16", True, 1.0), ("off", False, 4.0))
    rows = [{"experiment": name, "amp": amp, "channels_last": cl, "projected min": minutes}
            for name in experiments.EXPERIMENTS for amp, cl, minutes in settings]
    layouts = [experiments.config(name, "full")["channels_last"] for name in experiments.EXPERIMENTS]
    assert True in layouts and False in layouts  # the CNNs train channels_last, the ViTs do not
    count = len(experiments.EXPERIMENTS)
    assert gpu_check.study_totals(rows, "bf16") == {"registry settings": sum(1.0 if cl else 2.0 for cl in layouts),
                                                    "fastest setting each": 1.0 * count}
    first_registry_row = 1 if layouts[0] else 0  # the first experiment's registry setting goes missing
    partial = gpu_check.study_totals(rows[:first_registry_row] + rows[first_registry_row + 1:], "bf16")
    assert partial["registry settings"] is None
    assert gpu_check.study_totals(rows[3:], "bf16") is None  # an experiment not measured at all


def test_paper_estimate_counts_training_validation_and_pgd_passes():
    rows = {row["experiment"]: row for row in gpu_check.paper_estimate(tflops=100)}
    assert set(rows) == set(experiments.EXPERIMENTS)
    plain, adversarial = rows["simplenet"], rows["advsimplenet"]
    assert plain["forward GFLOP/image"] == pytest.approx(adversarial["forward GFLOP/image"])
    assert 0.25 < plain["forward GFLOP/image"] < 0.4 < rows["resnet18"]["forward GFLOP/image"]
    assert adversarial["PGD steps"] == experiments.ADVERSARIAL_TRAINING["num_steps"] == 4
    per_epoch_ratio = (3 * 5 * 100_000 + 10_000) / (3 * 100_000 + 10_000)  # 4 PGD steps: 3 + 4 x 3 passes
    assert adversarial["PFLOP"] / adversarial["epochs"] == pytest.approx(
        per_epoch_ratio * plain["PFLOP"] / plain["epochs"])
    for row in rows.values():
        assert row["minutes"] == pytest.approx(row["PFLOP"] * 1e15 / 100e12 / 60)
