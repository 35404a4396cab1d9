"""benchmarks/gpu_check.py and benchmarks/estimate.py on a CPU (the CUDA path runs under `make gpu-check`)."""
import json
import time

import pytest
import torch

from benchmarks import estimate, gpu_check, gpu_sections
from benchmarks.budget import Share
from lib import experiments


def stub_sections(monkeypatch):
    """Every section's measurement replaced by an instant stand-in that passes."""
    monkeypatch.setattr(gpu_check.gpu_sections, "cuda_tests", lambda seconds: {"passed": True, "summary": "1 passed"})
    monkeypatch.setattr(gpu_check.gpu_sections, "conv_agreement", lambda device: [{"ok": True}])
    monkeypatch.setattr(gpu_check.gpu_sections, "experiment_row", lambda name, *args, **kwargs: {
        "experiment": name, "images/s": 1.0, "TFLOP/s": 1.0})
    monkeypatch.setattr(gpu_check.gpu_sections, "pipeline_rows", lambda *args: [{"path": "DataLoader"}])
    monkeypatch.setattr(gpu_check.gpu_sections, "sanity", lambda *args: {"loss falls": True})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_without_cuda_it_says_so_in_one_line_and_exits_0(capsys):
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA GPU" in out[0]


# The quick check itself runs in tests/test_bare_machine.py, in a child process without the Jupyter stack.

def test_a_spent_share_skips_the_remaining_experiments_and_compile_still_runs_right_after_simplenet():
    calls = []
    rows = gpu_check.measure_experiments(torch.device("cpu"), "smoke", 1, Share(0, deadline=0),
                                         lambda: calls.append("compile"))
    assert [row["note"] for row in rows] == ["skipped: its share of the budget is spent"] * len(experiments.EXPERIMENTS)
    assert calls == ["compile"]


def sleepy(seconds):
    """A stand-in for a measurement that takes `seconds`."""
    def measure(*args, **kwargs):
        time.sleep(seconds)
        return {"experiment": "simplenet", "images/s": 1.0, "TFLOP/s": 1.0}
    return measure


def test_an_experiment_its_share_ends_is_stopped_and_the_rest_are_skipped(monkeypatch):
    monkeypatch.setattr(gpu_check.gpu_sections, "experiment_row", sleepy(30))
    share = Share(0.3, deadline=float("inf"))
    start = time.monotonic()
    with share.running():
        rows = gpu_check.measure_experiments(torch.device("cpu"), "smoke", 1, share)
    assert time.monotonic() - start < 5
    assert rows[0] == {"experiment": "simplenet", "note": "stopped: its share of the budget (0 s) ran out"}
    assert {row["note"] for row in rows[1:]} == {"skipped: its share of the budget is spent"}


def test_compile_has_its_own_share_and_a_row_that_says_why_it_was_skipped(monkeypatch):
    cuda = torch.device("cuda")  # a device object only: nothing runs on it here
    cpu_row = gpu_check.measure_compiled(torch.device("cpu"), "smoke", 1, Share(9, float("inf")))
    assert cpu_row["experiment"] == "simplenet (compiled)" and cpu_row["note"].startswith("skipped (a CPU")
    monkeypatch.setattr(gpu_check.gpu_sections, "experiment_row", sleepy(30))
    start = time.monotonic()
    row = gpu_check.measure_compiled(cuda, "smoke", 1, Share(0.3, float("inf")))
    assert time.monotonic() - start < 5 and row["note"] == "skipped (stopped: its share of the budget (0 s) ran out)"

    class InductorError(Exception):
        """torch.compile raises errors of its own types."""

    def no_compiler(*args, **kwargs):
        raise InductorError("no C++ compiler\nmore")
    monkeypatch.setattr(gpu_check.gpu_sections, "experiment_row", no_compiler)
    row = gpu_check.measure_compiled(cuda, "smoke", 1, Share(9, float("inf")))
    assert row["note"] == "skipped (torch.compile failed: no C++ compiler)"


def test_the_budget_is_hard_a_section_stops_at_its_share_and_the_check_ends_within_it(monkeypatch, tmp_path):
    stub_sections(monkeypatch)
    monkeypatch.setattr(gpu_check.gpu_sections, "sanity", sleepy(60))
    start = time.monotonic()
    result, passed = gpu_check.check(torch.device("cpu"), True, 4.0, tmp_path)
    assert time.monotonic() - start < 4.5 and result["seconds"]["total"] <= 4.0
    assert result["sanity"] == {"stopped": "stopped: its share of the budget (1 s) ran out"}
    assert passed  # in --quick the sanity run owes no verdict; the table says it stopped
    assert "STOPPED: stopped: its share of the budget" in gpu_check.report(result)
    assert not gpu_check.check(torch.device("cpu"), False, 4.0, tmp_path)[1]  # outside --quick it owes one


def test_a_budget_that_is_not_positive_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--device", "cpu", "--budget", "0"])
    assert "--budget takes a positive number of seconds, got 0" in capsys.readouterr().err


def test_the_pipeline_rate_is_timed_after_an_untimed_warm_up_batch():
    seen = []
    batches = [(torch.zeros(4, 3, 2, 2), None) for _ in range(5)]
    rate = gpu_sections._rate(batches, torch.device("cpu"), 60, lambda batch: seen.append(len(batch)) or batch)
    assert len(seen) == 5 and rate > 0  # the first batch went through the transform too, before the clock


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

    stub_sections(monkeypatch)
    monkeypatch.setattr(gpu_check.gpu_sections, "conv_agreement", broken)
    result, passed = gpu_check.check(torch.device("cpu"), True, 1000, tmp_path)
    assert not passed and result["conv"] == {"error": "RuntimeError: CUDA error: an illegal memory access was "
                                                      "encountered"}
    assert len(result["experiments"]) == len(experiments.EXPERIMENTS) and result["sanity"] == {"loss falls": True}
    assert "FAILED: RuntimeError: CUDA error" in gpu_check.report(result)
