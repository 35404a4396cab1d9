"""Cached per-image analyses of a finished smoke run: computed once, re-read without a model, never overwritten."""
import errno
import threading
import time

import numpy as np
import pytest
import torch

from lib import experiments
from lib.attacks.pgd import PGDAttack
from lib.core.errors import DiskFullError
from lib.report import analysis, cache


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    torch.set_num_threads(1)
    results = tmp_path_factory.mktemp("results")
    return experiments.run("simplenet", "smoke", results_dir=results, progress=False, device="cpu", epochs=1)


def no_model(monkeypatch, run):
    def fail(*args, **kwargs):
        raise AssertionError("a cached analysis loaded the model")
    monkeypatch.setattr(type(run), "load_model", fail)


def test_predictions_match_the_run_and_are_cached(run, monkeypatch):
    first = analysis.predictions(run, device="cpu")
    assert first["top5"].shape == (48, 5) and first["label"].shape == (48,)
    assert 100 * analysis.correct(first).mean() == pytest.approx(run.metrics["val_acc1"])
    assert 100 * analysis.correct(first, k=5).mean() == pytest.approx(run.metrics["val_acc5"])
    no_model(monkeypatch, run)
    again = analysis.predictions(run)
    np.testing.assert_array_equal(again["top5"], first["top5"])


def test_attack_evaluation_cached_with_per_image_results_and_provenance(run, monkeypatch):
    attack = PGDAttack(num_steps=3, step_size=2 / 255, epsilon=6 / 255)
    by_steps = analysis.attack_evaluation(run, attack, images=20, steps=[1, 3], device="cpu")
    assert sorted(by_steps) == [1, 3]
    result = by_steps[3]
    assert result["num_images"] == 20 and len(result["index"]) == 20
    assert 100 * analysis.correct(result["per_image"], when="adv").mean() == pytest.approx(result["adv_acc1"])
    settings = {"attack": attack.settings(), "steps": [1, 3], "images": 20}
    record = cache.provenance(run, "attack", settings)
    assert record["run"] == "simplenet/" + run.dir.name and record["run_finished_at"]
    no_model(monkeypatch, run)
    assert analysis.attack_evaluation(run, attack, images=20, steps=[3, 1])[3]["adv_acc1"] == result["adv_acc1"]


def test_analyses_compute_in_ieee_fp32_whatever_the_caller_enabled(run, monkeypatch):
    """A per-image result means the same on every device: no autocast and no TF32, even when the calling code
    (a notebook cell, a training run's precision) has them on."""
    seen, load = [], type(run).load_model

    def spy(self, *args, **kwargs):
        model = load(self, *args, **kwargs)
        model.register_forward_hook(
            lambda module, inputs, out: seen.append((out.dtype, torch.backends.cudnn.conv.fp32_precision)))
        return model
    monkeypatch.setattr(type(run), "load_model", spy)
    before = torch.backends.cudnn.conv.fp32_precision
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            analysis.attack_evaluation(run, PGDAttack(num_steps=1, step_size=1 / 255, epsilon=1 / 255), images=4,
                                       device="cpu")
        assert torch.backends.cudnn.conv.fp32_precision == "tf32"  # the caller's setting is back afterwards
    finally:
        torch.backends.cudnn.conv.fp32_precision = before
    assert seen and set(seen) == {(torch.float32, "ieee")}


def test_force_recomputes_and_keeps_the_previous_files(run):
    analysis.predictions(run, device="cpu")
    analysis.predictions(run, device="cpu", force=True)
    kept = list((run.dir / "analyses").glob("predictions-*.replaced-*.json"))
    assert len(kept) == 1


def test_cache_round_trips_nested_arrays_and_values(run):
    computed = {"a": np.arange(3), "nested": {"b": np.ones((2, 2)), "note": "x"}, "n": 4}
    got = cache.cached(run, "test", {"k": 1}, lambda: computed)
    assert got["n"] == 4 and got["nested"]["note"] == "x"
    np.testing.assert_array_equal(got["nested"]["b"], np.ones((2, 2)))
    assert cache.cached(run, "test", {"k": 1}, lambda: pytest.fail("recomputed"))["a"].tolist() == [0, 1, 2]


def test_capped_run_attacks_the_images_its_index_names(tmp_path):
    """In a capped run the attacked images are spread over the images its predictions cover, and the stored
    index names exactly the images that were attacked."""
    torch.set_num_threads(1)
    capped = experiments.run("simplenet", "smoke", results_dir=tmp_path, progress=False, device="cpu",
                             dry_run=True, val_batch_size=8)
    covered = len(analysis.predictions(capped, device="cpu")["label"])
    assert covered == 8 * experiments.DRY_RUN["val_batches"] < 48  # the first two batches of 8 of 48 images
    result = analysis.under_attack(capped, PGDAttack(num_steps=1, step_size=1 / 255, epsilon=1 / 255), images=4,
                                   device="cpu")
    val_set, _ = experiments.val_data(capped.config)
    assert result["index"].max() < covered
    np.testing.assert_array_equal(result["per_image"]["label"], val_set.tensors[1][result["index"]].numpy())


def test_vit_settings_are_read_from_the_built_model():
    cfg = experiments.config("vit", "smoke")
    vit = analysis.vit_settings(cfg)
    rows, cols = vit["grid"]
    assert vit["image_size"] == cfg["image_size"] and rows == cols == cfg["image_size"] // vit["patch_size"]
    assert vit["tokens"] == rows * cols and vit["depth"] >= len(vit["windowed"]) > 0
    assert vit["windows"] == -(-rows // vit["window_size"]) * -(-cols // vit["window_size"])
    assert vit["num_classes"] == 100 and vit["mlp_ratio"] >= 1 and vit["epochs"] == cfg["epochs"]


def test_strong_attacks_are_cached_and_the_worst_case_is_at_most_pgd(run, monkeypatch):
    strong = experiments.attack_settings("smoke")["strong"]
    images = experiments.attack_settings("smoke")["strong_images"]
    first = analysis.strong_attacks(run, strong, images, device="cpu")
    assert sorted(first) == sorted(["ce", "dlr-targeted"])
    pgd = analysis.under_attack(run, PGDAttack(**experiments.attack_settings("smoke")["default"]), images, "cpu")
    worst = analysis.robust_to_all([pgd, *first.values()])
    assert worst.shape == (images,) and worst.sum() <= analysis.correct(pgd["per_image"], when="adv").sum()
    for result in first.values():
        assert result["num_images"] == images and result["clean_acc1"] == pgd["clean_acc1"]
    fewer = analysis.under_attack(run, PGDAttack(**experiments.attack_settings("smoke")["default"]), images - 4)
    with pytest.raises(ValueError, match="same images"):
        analysis.robust_to_all([pgd, fewer])
    no_model(monkeypatch, run)
    again = analysis.strong_attacks(run, strong, images)
    assert all(np.array_equal(again[k]["per_image"]["adv_rank"], first[k]["per_image"]["adv_rank"]) for k in first)


def test_attack_comparison_puts_pgd_and_apgd_side_by_side_on_the_same_images(run):
    settings = experiments.attack_settings("smoke", images=12)
    compared = analysis.attack_comparison(run, settings, device="cpu")
    assert list(compared) == ["clean", "PGD-10", "APGD-CE", "APGD-T (DLR)", "worst case"]
    assert all(ok.shape == (12,) for ok in compared.values())
    assert (compared["worst case"] <= compared["PGD-10"]).all()
    pgd = analysis.under_attack(run, PGDAttack(**settings["default"]), 12)
    np.testing.assert_array_equal(compared["PGD-10"], analysis.correct(pgd["per_image"], when="adv"))


def test_correct_reads_the_rank_before_or_after_the_attack():
    """A label ranked 0 before the attack and 3 after: correct at top-1 before it, only at top-5 after it."""
    per_image = {"clean_rank": np.array([0]), "adv_rank": np.array([3])}
    assert analysis.correct(per_image, when="clean")[0] and not analysis.correct(per_image, when="adv")[0]
    assert analysis.correct(per_image, k=5, when="adv")[0]
    with pytest.raises(ValueError, match="when must be None \\(predictions\\), 'clean' or 'adv'"):
        analysis.correct(per_image, when="adv_top5")


def test_two_requests_for_one_analysis_compute_it_once(run, capsys):
    """A second process (here a thread) asking for an analysis being computed waits and loads the result."""
    calls, started = [], threading.Event()

    def compute():
        calls.append(1)
        started.set()
        time.sleep(0.5)
        return {"value": np.arange(3)}
    settings = {"test": "concurrent"}
    first = threading.Thread(target=cache.cached, args=(run, "concurrency", settings, compute))
    first.start()
    started.wait(5)
    second = cache.cached(run, "concurrency", settings, compute)
    first.join()
    assert len(calls) == 1
    np.testing.assert_array_equal(second["value"], np.arange(3))
    assert "waiting for another process computing it" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_a_damaged_analysis_is_named_once_moved_aside_and_computed_again(run, capsys, suffix):
    kind, computed = f"damaged{suffix[1:]}", {"a": np.arange(4), "n": 2}
    cache.cached(run, kind, {}, lambda: computed)
    stored = next((run.dir / "analyses").glob(f"{kind}-*{suffix}"))
    stored.write_bytes(stored.read_bytes()[:stored.stat().st_size // 2])
    capsys.readouterr()
    got = cache.cached(run, kind, {}, lambda: computed)
    assert got["a"].tolist() == [0, 1, 2, 3] and got["n"] == 2
    assert cache.cached(run, kind, {}, lambda: pytest.fail("recomputed"))["n"] == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"damaged analysis {stored.with_suffix('')} (")
    assert sorted(p.suffix for p in (run.dir / "analyses").glob(f"{stored.stem}.damaged-*")) == [".json", ".npz"]


def test_a_full_disk_leaves_no_analysis_behind(run, monkeypatch):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(type(run.dir), "write_bytes", full)
    with pytest.raises(DiskFullError, match="writing the analysis .*/fullness-.*npz"):
        cache.cached(run, "fullness", {}, lambda: {"a": np.arange(3)})
    assert [p.suffix for p in (run.dir / "analyses").glob("*fullness-*")] == [".lock"]  # no .npz, no temporary
