"""benchmarks/gpu_check.py and benchmarks/estimate.py on a CPU (the CUDA path runs under `make gpu-check`)."""
import json

import pytest
import torch

from benchmarks import estimate, gpu_check
from lib import experiments


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_without_cuda_it_says_so_in_one_line_and_exits_0(capsys):
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA GPU" in out[0]


def test_the_quick_check_runs_every_section_on_a_cpu_and_writes_json_and_markdown(capsys, tmp_path):
    assert gpu_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "gpu_check.json").read_text())
    assert result["passed"] and result["profile"] == "smoke" and result["versions"]["torch"] == torch.__version__
    assert set(result["seconds"]) == {"tests", "conv", "experiments", "pipeline", "sanity"}
    assert {(row["precision"], row["tensor"]) for row in result["conv"] if row["ok"]} == {
        (p, t) for p in ("fp32", "bf16") for t in ("output", "grad input", "grad weight", "grad bias")}
    rows = result["experiments"]
    assert [row["experiment"] for row in rows] == list(experiments.EXPERIMENTS)
    measured = [row for row in rows if "images/s" in row]
    assert measured and all(row["images/s"] > 0 and row["TFLOP/s"] > 0 and row["steps"] == 1 for row in measured)
    assert all(row["note"].startswith("skipped") for row in rows if "images/s" not in row)
    assert [row["path"] for row in result["pipeline"]] == ["DataLoader", "device-resident",
                                                            "device-resident + TrainAugment"]
    assert all(row["images/s"] > 0 and row["images"] == 1024 for row in result["pipeline"])
    sanity = result["sanity"]
    assert sanity["train steps"] == 96 // 16 and sanity["attacked images"] == 16 and sanity["attack TFLOP/s"] > 0
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| simplenet | fp32 | 16 | 1 |" in table and table.strip() in capsys.readouterr().out


def test_a_spent_share_skips_the_remaining_experiments():
    spent = gpu_check.Section(0, deadline=0)
    rows = gpu_check.measure_experiments(torch.device("cpu"), "smoke", 1, spent)
    assert [row["note"] for row in rows] == ["skipped: its share of the budget is spent"] * len(experiments.EXPERIMENTS)


def test_the_estimate_counts_training_pgd_validation_and_the_notebooks_attacks(capsys):
    assert gpu_check.main(["--estimate", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert set(table) == set(experiments.EXPERIMENTS) | {"total"}
    adv, plain = table["advsimplenet"], table["simplenet"]
    runs = experiments.SEEDS["full"]  # AdvSimpleNet is behind a comparative finding: one run per seed
    assert adv["seeds"] == runs and table["simplenet_custom"]["seeds"] == 1
    # 70 epochs x 99,840 images x (2.76 + 4 x 2.0) x 0.32 GFLOP + validation, per seed
    assert 23 < adv["train_pflop"] / runs < 25.5
    for row in table.values():
        assert row["minutes_low"] < row["minutes_likely"] < row["minutes_high"]
    for name in experiments.EXPERIMENTS:
        row, cfg = table[name], experiments.config(name, "full")
        assert 2.7 < row["train_step_forwards"] < 3.0 and 1.9 < row["attack_step_forwards"] < 2.1
        pgd = cfg["adversarial"]["num_steps"] if cfg["adversarial"] else 0
        forwards = row["train_step_forwards"] + pgd * row["attack_step_forwards"]
        per_image = row["forward_gflop_per_image"] * 1e9 * forwards
        expected = row["seeds"] * cfg["epochs"] * (99_840 * per_image + 10_000 * row["forward_gflop_per_image"] * 1e9)
        assert row["train_pflop"] * 1e15 == pytest.approx(expected)
    steps = estimate.attack_steps()
    assert steps == {"default": 10 * 10_000, "strong": 100 * 1 * (1 + 9) * 10_000, "curve": 5 * 10 * 200,
                     "grid": 4 * 20 * 200}
    attack_flops = plain["forward_gflop_per_image"] * 1e9 * plain["attack_step_forwards"]
    per_seed = runs * (steps["default"] + steps["strong"])  # every seed's run; the curves and grid: the first's
    assert plain["attack_pflop"] * 1e15 == pytest.approx((per_seed + steps["curve"] + steps["grid"]) * attack_flops)
    assert adv["attack_pflop"] * 1e15 == pytest.approx((per_seed + steps["curve"]) * attack_flops)
    assert table["vit"]["attack_pflop"] == 0
    total = table["total"]
    assert total["train_pflop"] == pytest.approx(sum(table[n]["train_pflop"] for n in experiments.EXPERIMENTS))
    assert total["minutes_likely"] == pytest.approx(
        sum(table[n]["minutes_likely"] for n in experiments.EXPERIMENTS) + estimate.DECODE_SECONDS[1] / 60)


def test_the_estimate_takes_a_checks_measured_rates(tmp_path, capsys):
    check = {"experiments": [{"experiment": "simplenet", "TFLOP/s": 20.0}, {"experiment": "vit", "note": "failed"}],
             "sanity": {"attack TFLOP/s": 5.0}}
    (tmp_path / "gpu_check.json").write_text(json.dumps(check))
    assert gpu_check.main(["--estimate", "--json", "--from", str(tmp_path / "gpu_check.json")]) == 0
    table = json.loads(capsys.readouterr().out)
    plain, vit = table["simplenet"], table["vit"]
    assert plain["measured"] and not vit["measured"]
    epochs = experiments.config("simplenet", "full")["epochs"]
    seconds = plain["train_pflop"] * 1e15 / 20e12 + plain["attack_pflop"] * 1e15 / 5e12
    assert plain["minutes_likely"] == pytest.approx(
        (seconds + plain["seeds"] * (epochs * estimate.EPOCH_SECONDS[1] + estimate.RUN_SECONDS[1])) / 60)
    assumed = estimate.estimate()
    assert vit["minutes_likely"] == pytest.approx(assumed["vit"]["minutes_likely"])
    assert gpu_check.main(["--estimate"]) == 0
    assert "assumed throughputs" in capsys.readouterr().out


def test_a_section_that_breaks_is_reported_and_the_others_still_run(monkeypatch, tmp_path):

    def broken(device):
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore lines")

    monkeypatch.setattr(gpu_check.gpu_sections, "conv_agreement", broken)
    monkeypatch.setattr(gpu_check.gpu_sections, "experiment_row", lambda name, *args, **kwargs: {
        "experiment": name, "images/s": 1.0, "TFLOP/s": 1.0})
    monkeypatch.setattr(gpu_check.gpu_sections, "pipeline_rows", lambda *args: [{"path": "DataLoader"}])
    monkeypatch.setattr(gpu_check.gpu_sections, "sanity", lambda *args: {"loss falls": True})
    result, passed = gpu_check.check(torch.device("cpu"), True, float("inf"), tmp_path)
    assert not passed and result["conv"] == {"error": "RuntimeError: CUDA error: an illegal memory access was "
                                                      "encountered"}
    assert len(result["experiments"]) == len(experiments.EXPERIMENTS) and result["sanity"] == {"loss falls": True}
    assert "FAILED: RuntimeError: CUDA error" in gpu_check.report(result)
