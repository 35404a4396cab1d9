"""Section 2's tables and facts, from constructed runs, accuracy facts and measured costs."""
from types import SimpleNamespace

import numpy as np
import pytest

from lib.report import findings, stats
from lib.report.sections import convolution


def fake_run(title, train_time_s=10.0, seed=0, **metrics):
    return SimpleNamespace(config={"title": title, "seed": seed, "lr": 0.02, "weight_decay": 5e-4},
                           metrics={"provenance": {"train_time_s": train_time_s}, **metrics})


def fake_acc(correct, epochs, train_images=96, gap=1.0):
    k, n = int(np.sum(correct)), len(correct)
    return dict(n=n, correct=np.asarray(correct, bool), epochs=epochs, train_images=train_images, gap=gap,
                top1=stats.describe(k, n), top1_cell=stats.interval_cell(k, n), top5_cell="50.0 [1, 2]",
                train="t", train_cell="30.0 [1, 2]")


CORRECT = {"simplenet": [1, 1, 0, 0, 1, 0], "simplenet_custom": [1, 0, 0, 0, 0, 0],
           "improvednet": [1, 1, 1, 0, 1, 1], "resnet18": [1, 1, 1, 1, 1, 1]}


@pytest.fixture
def runs():
    return {name: fake_run(f"title {name}", seed=7) for name in convolution.NAMES}


@pytest.fixture
def acc():
    return {name: fake_acc(CORRECT[name], 4 if name != "simplenet_custom" else 2,
                           train_images=48 if name == "simplenet_custom" else 96) for name in convolution.NAMES}


def seeded_correct(seeds=2):
    """Two seeds for every experiment but the custom one (one seed), as in a study with seeds."""
    flip = {name: [not v for v in values] for name, values in CORRECT.items()}
    return {name: [np.array(CORRECT[name], bool)] + ([np.array(flip[name], bool)] * (seeds - 1)
                                                      if name != "simplenet_custom" else [])
            for name in convolution.NAMES}


def test_accuracy_table_has_a_row_per_experiment_with_the_reference(runs, acc):
    table = convolution.accuracy_table(runs, acc, 6)
    assert [row[0] for row in table.body] == [f"title {name}" for name in convolution.NAMES]
    assert table.header[:3] == ["experiment", "epochs", "val top-1 (%)\n[95% CI]"]
    assert "reference\ntop-1 (%)" in table.header and table.number == "2.1"
    reference = table.header.index("reference\ntop-1 (%)")
    assert table.body[0][reference] == f"{findings.REFERENCE['simplenet'][1]:.1f}"
    assert "n = 6 images each" in table.caption and "n = 48 or 96 images" in table.caption


def test_paired_comparisons_pair_seed_by_seed(acc):
    correct = seeded_correct()
    comparisons = convolution.paired_comparisons(correct)
    assert list(comparisons) == list(convolution.COMPARED)
    assert len(comparisons[("simplenet", "simplenet_custom")]) == 1  # the custom run has one seed
    first, second = comparisons[("improvednet", "simplenet")]
    assert first["difference"] == pytest.approx((5 - 3) / 6) and first["b"] == 2 and first["c"] == 0
    assert second["difference"] == pytest.approx((1 - 3) / 6)
    table = convolution.comparison_table(comparisons)
    assert [row[0] for row in table.body] == ["SimpleNet vs SimpleNet (custom)", "ImprovedNet vs SimpleNet",
                                              "ResNet-18 vs ImprovedNet"]
    assert table.body[1][table.header.index("only A / only B\nright")] == "2 / 0"  # the first seed's


def test_seeds_table_lists_only_experiments_with_several_seeds(runs):
    table = convolution.seeds_table(runs, seeded_correct(3))
    assert [row[0] for row in table.body] == ["title simplenet", "title improvednet", "title resnet18"]
    assert table.body[0][table.header.index("seeds")] == "3" and "(seed 7 and the next" in table.caption


def test_custom_and_improved_facts_compare_the_right_models(runs, acc):
    comparisons = convolution.paired_comparisons(seeded_correct(1))
    custom = convolution.custom_facts(acc, comparisons)
    assert custom["native_epochs"] == 4 and custom["custom_epochs"] == 2
    assert custom["comparison"].startswith("nn.Conv2d minus custom: +33.3 points")
    improved = convolution.improved_facts(runs, acc, comparisons)
    assert improved["improved_top1"] == acc["improvednet"]["top1"] and improved["lr"] == 0.02
    assert improved["comparison"].startswith("ImprovedNet minus SimpleNet: +33.3 points")


def test_costs_table_and_ratios(runs, acc):
    runs["simplenet"].metrics["provenance"]["train_time_s"] = 40.0  # 4 epochs: 10 s each
    runs["simplenet_custom"].metrics["provenance"]["train_time_s"] = 30.0  # 2 epochs: 15 s each
    costs = {"native": {"seconds_per_step": 0.1, "images_per_s": 640.0, "peak_memory_mb": 100.0,
                        "round_seconds": [0.1, 0.1, 0.2]},
             "custom": {"seconds_per_step": 0.15, "images_per_s": 426.7, "peak_memory_mb": 250.0,
                        "round_seconds": [0.15, 0.2, 0.2]},
             "batch": 64, "image_size": 64, "device_name": "cpu", "precision": "fp32", "rounds": 3, "repeats": 2}
    assert convolution.epoch_times(runs, acc) == {"native": 10.0, "custom": 15.0}
    table = convolution.cost_table(costs, runs, acc)
    assert table.header == ["convolution", "s / step", "images / s", "peak memory (MiB)", "s / epoch in training"]
    assert table.body == [["nn.Conv2d", "0.100", "640", "100.0", "10.0"], ["custom", "0.150", "427", "250.0", "15.0"]]
    assert "batch 64 at 64 px on cpu in IEEE fp32 (medians of 3 rounds of 2 steps)" in table.caption
    facts = convolution.cost_facts(costs, runs, acc)
    assert facts["memory"] == pytest.approx(2.5) and facts["native"] == 10.0 and facts["custom"] == 15.0
    assert facts["time"] == "1.50x (1.00-2.00x over the rounds)"


def test_resnet_facts_count_parameters_in_millions(runs, acc, monkeypatch):
    counts = {"title resnet18": 11_200_000, "title simplenet": 300_000}
    monkeypatch.setattr(convolution.measurements, "parameters", lambda run: counts[run.config["title"]])
    runs["resnet18"].metrics.update(train_loss=1.25, pretrained_source=None)
    acc["resnet18"]["gap"], acc["simplenet"]["gap"] = 20.0, 2.0
    facts = convolution.resnet_facts(runs, acc, convolution.paired_comparisons(seeded_correct(1)))
    assert facts["resnet_params"] == pytest.approx(11.2) and facts["simple_params"] == pytest.approx(0.3)
    assert facts["loss"] == 1.25 and "random initialisation" in facts["start"]
    assert "meaning" not in facts and facts["resnet_gap"] == 20.0
    assert facts["comparison"].startswith("ResNet-18 minus ImprovedNet")
