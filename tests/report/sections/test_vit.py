"""Section 3's tables and facts, from constructed runs, accuracy facts and measured costs."""
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from lib.report import findings, stats
from lib.report.sections import vit


def fake_run(title, optimizer="adamw", lr=1e-3, val_acc1=(10.0, 20.0, 30.0), **config):
    return SimpleNamespace(
        config={"title": title, "optimizer": optimizer, "lr": lr, "data_dir": "/data/miniplaces", **config},
        metrics={"best_val_acc1": max(val_acc1), "provenance": {"train_time_s": 12.5, "device": "a CPU",
                                                                 "images_per_s": 80.0}},
        history=pd.DataFrame({"val_acc1": list(val_acc1)}))


def fake_acc(correct, epochs=3, gap=2.0, train_images=96):
    k, n = int(np.sum(correct)), len(correct)
    return dict(n=n, correct=np.asarray(correct, bool), epochs=epochs, gap=gap, train_images=train_images,
                top1=stats.describe(k, n), top1_cell=stats.interval_cell(k, n), top5_cell="60.0 [1, 2]",
                train_cell="40.0 [1, 2]", first=f"first {k}", first_cell=f"{k}.0 [1, 2]")


def step(ms, rounds, mib, attention, forward):
    return {"seconds_per_step": ms / 1e3, "images_per_s": 1e3 / ms, "peak_memory_mb": mib,
            "round_seconds": [r / 1e3 for r in rounds], "attention_flops": attention, "forward_flops": forward}


COSTS = {"window": step(20, [20, 18, 22], 100.0, 1e6, 40e6), "global": step(25, [25, 25, 25], 125.0, 4e6, 43e6),
         "batch": 32, "image_size": 64, "device_name": "cpu", "precision": "fp32", "rounds": 3, "repeats": 2}
SETTINGS = dict(image_size=64, patch_size=8, embed_dim=192, depth=4, num_heads=4, window_size=4, epochs=3,
                grid=(8, 8), tokens=64, windows=4, windowed=[0, 2], mlp_ratio=4, drop_path=0.1, num_classes=100)


def test_settings_facts_describe_the_grid_and_the_differences():
    run = fake_run("ViT", epochs=3, image_size=64)
    facts = vit.settings_facts(run, SETTINGS, "smoke", 48)
    assert facts["windowed"] == "0, 2" and (facts["rows"], facts["cols"]) == (8, 8) and facts["tokens"] == 64
    assert facts["profile"] == "smoke" and facts["n"] == 48 and facts["hardware"] == "a CPU"
    assert facts["data"] == "`miniplaces`" and facts["optimizer"] == "adamw"
    assert facts["differences"].startswith("Settings that differ from the reference: image size 64 (reference 128)")


def test_accuracy_table_and_facts_have_one_row_per_vit():
    runs = {"window": fake_run("w"), "global": fake_run("g", val_acc1=(5.0, 40.0, 35.0))}
    acc = {"window": fake_acc([1, 1, 0, 0]), "global": fake_acc([1, 0, 0, 0], train_images=48)}
    table = vit.accuracy_table(runs, acc)
    assert [row[0] for row in table.body] == ["ViT, window attention", "ViT, global attention"]
    assert table.body[1][table.header.index("best val\ntop-1 (%)")] == "40.0"
    assert table.body[0][table.header.index("train\ntime (s)")] == "12.5"
    assert "n = 4 validation images" in table.caption and "n = 48 or 96 images" in table.caption
    pairs = stats.paired_by_seed([acc["window"]["correct"]], [acc["global"]["correct"]])
    facts = vit.accuracy_comparison_facts(acc, SETTINGS, pairs)
    assert facts["chance"] == 1.0 and facts["window_top1"] == acc["window"]["top1"]
    assert facts["comparison"] == findings.describe_seeds(pairs, "window", "global")


def test_seeds_table_has_both_vits():
    correct = {"window": [np.array([1, 1, 0, 0], bool)] * 2, "global": [np.array([1, 0, 0, 0], bool)] * 2}
    table = vit.seeds_table(correct)
    assert [row[0] for row in table.body] == list(vit.LABELS.values()) and table.number == "3.4"
    assert table.body[0][table.header.index("seeds")] == "2"


def test_cost_summary_scales_and_divides():
    cost = vit.cost_summary(COSTS)
    assert cost["window"]["attention"] == pytest.approx(1.0) and cost["global"]["forward"] == pytest.approx(43.0)
    assert cost["window"]["ms"] == pytest.approx(20.0) and cost["global"]["rate"] == pytest.approx(40.0)
    assert cost["ratio"]["attention"] == pytest.approx(0.25) and cost["ratio"]["mib"] == pytest.approx(0.8)


def test_cost_table_is_transposed_with_a_ratio_column():
    table = vit.cost_table(COSTS)
    assert table.header == ["model", "ViT, window attention", "ViT, global attention", "window / global"]
    assert [row[0] for row in table.body] == [column for _, _, column in vit.COST_COLUMNS.values()]
    assert table.body[0] == ["attention MFLOPs / image", "1.00", "4.00", "0.25"]
    assert "batch 32 at 64 px, cpu, IEEE fp32; medians of 3 rounds of 2 steps" in table.caption


def test_cost_facts_give_the_share_and_the_words():
    facts = vit.cost_facts(COSTS, SETTINGS)
    assert facts["share"] == pytest.approx(4 / 43) and facts["ratio_forward"] == pytest.approx(40 / 43)
    assert facts["times"] == "0.80x (0.72-0.88x over the rounds)" and facts["time_word"] == "lower"
    assert facts["memory_word"] == "lower" and (facts["rows"], facts["cols"]) == (8, 8)


def test_scaling_facts_take_the_largest_grid():
    rows = [{"model": model, "tokens": tokens, "seconds_per_step": seconds, "peak_memory_mb": mib}
            for model, tokens, seconds, mib in (("window", 64, 1.0, 10.0), ("global", 64, 1.0, 10.0),
                                                ("window", 256, 2.0, 30.0), ("global", 256, 4.0, 40.0))]
    facts = vit.scaling_facts({"rows": rows, "device_name": "cpu"}, COSTS, SETTINGS)
    assert facts["tokens"] == 256 and facts["time"] == 0.5 and facts["memory"] == 0.75
    assert facts["trained"] == 64 and facts["trained_time"] == pytest.approx(0.8) and facts["device"] == "cpu"


def test_versus_table_and_facts_compare_simplenet_with_the_vit():
    versus = {"cnn": fake_run("SimpleNet", optimizer="sgd", lr=0.02, val_acc1=(15.0, 25.0, 30.0)),
              "vit": fake_run("ViT", val_acc1=(10.0, 20.0, 35.0))}
    versus_acc = {"cnn": fake_acc([1, 1, 1, 0], gap=1.0), "vit": fake_acc([1, 0, 0, 0], gap=7.0)}
    costs = {"cnn": {"parameters": 300_000, "forward_flops": 20e6, "seconds_per_step": 0.01, "peak_memory_mb": 50.0},
             "vit": {"parameters": 1_500_000, "forward_flops": 50e6, "seconds_per_step": 0.03, "peak_memory_mb": 80.0},
             "device_name": "cpu", "precision": "bf16"}
    assert vit.versus_names(versus) == {"cnn": "SimpleNet", "vit": "ViT, window attention"}
    table = vit.versus_table(versus, versus_acc, costs)
    assert table.header == ["", "SimpleNet", "ViT, window attention"]
    assert [row[0] for row in table.body] == list(vit.VERSUS_ROWS.values())
    assert table.body[list(vit.VERSUS_ROWS).index("params")][1:] == ["0.30", "1.50"]
    assert "n = 4)" in table.caption and "bf16 autocast" in table.caption
    facts = vit.versus_facts(versus, versus_acc, costs)
    assert facts["flops_ratio"] == pytest.approx(2.5) and facts["vit_ms"] == pytest.approx(30.0)
    assert (facts["epochs"], facts["ahead"]) == (3, 2) and facts["cnn_optimizer"] == "sgd"
    assert facts["final"].startswith("SimpleNet minus ViT: +50.0 points") and facts["vit_rate"] == 80.0
