"""The report's time estimate: its arithmetic on constructed inputs, what it counts, and the measured step."""
import json

import pytest
import torch

from lib import study
from lib.report import estimate
from lib.study.parameters import Study


def run_config(**changes):
    """A training configuration with only what the arithmetic reads."""
    return {"epochs": 2, "batch_size": 10, "train_batches": None, "val_batches": None, "val_images": None,
            "val_batch_size": 5, "adversarial": None, **changes}


@pytest.mark.parametrize("changes, expected", [
    ({}, 2 * (100 + 30 / 3)),  # 105 images make 10 full batches of 10; 30 val images at a third of a step
    ({"adversarial": {"num_steps": 4}}, 2 * (5 * 100 + 30 / 3)),  # each batch crafted by 4 PGD iterations
    ({"train_batches": 3, "val_batches": 2}, 2 * (30 + 10 / 3)),  # capped: 3 steps, 2 val batches of 5
    ({"val_images": 12, "epochs": 1}, 100 + 12 / 3),
])
def test_training_steps(changes, expected):
    assert estimate.training_steps(run_config(**changes), train_size=105, val_size=30) == pytest.approx(expected)


def test_attack_steps():
    attack = {"default": {"num_steps": 10}, "images": None, "epsilons": (1, 2, 3, 4, 5), "grid_steps": (5, 10, 20),
              "grid_scales": (0.5, 1, 2, 4), "strong": {"num_steps": 25, "restarts": 2, "target_classes": 9},
              "strong_images": 300}
    curve = estimate.CURVE_IMAGES
    per_image = 2 / 3  # one clean and one attacked classification
    assert estimate.attack_steps(("default",), attack, 1000) == pytest.approx(1000 * (10 + per_image))
    assert estimate.attack_steps(("curve", "grid"), attack, 1000) == pytest.approx(
        curve * 5 * (10 + per_image) + curve * 4 * (20 + per_image))
    assert estimate.attack_steps(("strong",), attack, 1000) == pytest.approx(300 * 10 * (50 + per_image))
    assert estimate.attack_steps(("strong",), attack, 1000, correct=0.1) == pytest.approx(30 * 10 * (50 + per_image))
    assert estimate.attack_steps(("default",), attack, 1000, correct=0.1) == pytest.approx(1000 * (10 + per_image))
    capped = dict(attack, images=50)  # fewer images than the curve's cap: every attack uses 50
    assert estimate.attack_steps(("default", "curve"), capped, 1000) == pytest.approx(50 * 6 * (10 + per_image))


def test_seconds_per_notebook_and_the_printed_line():
    plan = [estimate.Work("03", "a", "fp32", 10), estimate.Work("01", "a", "bf16", 1000),
            estimate.Work("03", "b", "bf16", 500)]
    seconds = estimate.notebook_seconds(plan, {("a", "bf16"): 0.002, ("a", "fp32"): 0.5, ("b", "bf16"): 6.0})
    assert seconds == {"01": pytest.approx(2), "03": pytest.approx(5 + 3000)} and list(seconds) == ["01", "03"]
    result = {"seconds": sum(seconds.values()), "notebooks": seconds, "runs": 3, "device": "cpu (x86_64, 2 threads)",
              "measured": 12}
    line = estimate.describe(result)
    assert line.startswith("Estimated time of this report: about 50 min 07 s on cpu (x86_64, 2 threads) "
                           "(01: 2 s, 03: 50 min 05 s; 3 runs to train; ") and "timed just now, in 12 s" in line
    assert "every run is finished" in estimate.describe({"seconds": 4, "notebooks": {}, "runs": 0, "device": "x",
                                                         "measured": 1})
    assert estimate.describe({"seconds": 0.3, "notebooks": {"01": 0.3}, "runs": 1, "device": "x",
                              "measured": 1}).startswith("Estimated time of this report: under a second on x (01: ")


def test_every_reported_run_is_trained_in_a_notebook_of_the_report():
    from lib.report.build import notebooks
    numbers = {path.name[:2] for path in notebooks()}
    assert set(estimate.TRAINED_IN) == set(study.REPORTED) and set(estimate.TRAINED_IN.values()) <= numbers
    assert set(estimate.ATTACKED_IN) == set(estimate.ATTACKED) and set(estimate.ATTACKED_IN.values()) <= numbers
    assert {notebook for notebook, _ in estimate.MEASURED} <= numbers


def test_plan_counts_what_is_left_to_train(tmp_path, monkeypatch):
    monkeypatch.setattr(study.resolve, "RESULTS_DIR", tmp_path)
    parameters, cpu = Study("smoke"), torch.device("cpu")
    work, needed, trained = estimate.plan(parameters, cpu)
    assert trained == sorted((name, 0) for name in study.REPORTED)  # improvednet_table: no notebook trains it
    simplenet = estimate.model_key(parameters.config("simplenet"))
    assert {item.key for item in work} == set(needed) and simplenet in needed
    assert ("03", simplenet, estimate.ATTACK_PRECISION) in {item[:3] for item in work}
    assert {item.notebook for item in work} == {"01", "02", "03", "04"}
    for name in study.REPORTED:  # every run finished with this configuration: nothing left
        path = parameters.run_dir(name)
        path.mkdir(parents=True)
        (path / "config.json").write_text(json.dumps(parameters.config(name)))
        (path / "metrics.json").write_text("{}")
    assert estimate.plan(parameters, cpu) == ([], {}, [])
    assert estimate.plan(Study("smoke", force_retrain=True), cpu)[2] == sorted((n, 0) for n in study.REPORTED)
    two_seeds = estimate.plan(Study("smoke", seeds=2), cpu)[2]  # the seeded experiments' second seeds are new
    assert two_seeds == sorted((name, 1) for name in study.SEEDED)


def test_measured_step_is_per_image_and_positive():
    cfg = study.config("simplenet", "smoke")
    key = estimate.model_key(cfg)
    seconds = estimate.measure({key: cfg}, [estimate.Work("01", key, "fp32", 1)], torch.device("cpu"))
    assert list(seconds) == [(key, "fp32")] and 0 < seconds[(key, "fp32")] < 1


def test_auto_precision_on_a_bf16_cpu_is_timed_both_ways_and_picked_like_the_trainer(monkeypatch):
    cfg = study.config("vit", "smoke")
    key, cpu = estimate.model_key(cfg), torch.device("cpu")
    monkeypatch.setattr(estimate.devices, "has_native_bf16", lambda device: True)
    assert estimate.training_precision(cfg, cpu) == "auto"
    assert estimate.training_precision({**cfg, "amp": "off"}, cpu) == "fp32"
    for fp32, bf16, picked in ((1.0, 0.5, 0.5), (1.0, 0.95, 1.0)):  # bf16 kept only when >= 1.1x faster
        timed = {"fp32": fp32, "bf16": bf16}
        monkeypatch.setattr(estimate.step_costs, "time_training_step",
                            lambda model, images, *args: timed[args[-1]] * len(images))
        seconds = estimate.measure({key: cfg}, [estimate.Work("02", key, "auto", 1)], cpu)  # per image
        assert seconds == {(key, "auto"): pytest.approx(picked)}
