"""The report's prose: templates over computed facts, and the wording that depends on a result."""
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("IPython", reason="the report's prose displays through the Jupyter stack")

from lib import data  # noqa: E402 (after the skip)
from lib.report import prose, stats  # noqa: E402 (after the skip)


def pair(only_a, only_b, both=10, neither=80):
    """paired_difference of two models with the given counts of discordant and concordant images."""
    a = np.array([1] * both + [1] * only_a + [0] * only_b + [0] * neither, bool)
    b = np.array([1] * both + [0] * only_a + [1] * only_b + [0] * neither, bool)
    return stats.paired_difference(a, b)


def test_render_fills_named_facts_with_their_format():
    assert prose.render("{n:,} images, {ratio:.2f}x, {word}.", {"n": 12000, "ratio": 1.234, "word": "higher"}) == \
        "12,000 images, 1.23x, higher."
    assert prose.render("no facts", {}) == "no facts"


@pytest.mark.parametrize("template, message", [
    ("{a.b}", "must be a plain name"), ("{a[0]}", "must be a plain name"), ("{a!r}", "must be a plain name"),
    ("{missing}", "has no fact; facts: a, none"), ("{none}", "fact 'none' of a template is None")])
def test_render_refuses_expressions_missing_facts_and_none(template, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        prose.render(template, {"a": 1, "none": None})


def test_a_template_wraps_freely_and_keeps_its_paragraphs():
    text = prose.render("Trained for\n{epochs}. epochs\n\n{n} images.", {"epochs": 1, "n": 2})
    assert text == "Trained for 1. epochs\n\n2 images."  # '1.' at a line start would be a Markdown list


def test_a_rendered_fact_is_not_read_as_a_template():
    assert prose.render("{settings}", {"settings": "overrides {'lr': 0.1}"}) == "overrides {'lr': 0.1}"


def test_dataset_named_never_by_path(tmp_path):
    assert prose.dataset_name({"data_dir": str(data.SAMPLE_ROOT)}).startswith("the embedded sample (")
    assert prose.dataset_name({"data_dir": str(tmp_path / "miniplaces")}) == "`miniplaces`"
    cfg = {"data_dir": str(tmp_path / "mp"), "train_images": 5000, "val_images": 1000}
    assert prose.dataset_label(cfg) == "mp (5,000 / 1,000)"
    assert prose.dataset_label(dict(cfg, train_images=0)) == "mp"


def test_counts_ranges_and_subsets():
    assert prose.span([50, 50]) == "50" and prose.span([40, 60, 45]) == "40-60"
    assert prose.between((0.08, 1.0), 100) == "8-100" and prose.between((0.75, 1.333)) == "0.75-1.333"
    assert prose.subset({"train_images": 0, "val_images": 0}) == ""
    assert prose.subset({"train_images": 500, "val_images": 100}) == \
        ", on a subset of 500 training and 100 validation images"


def test_differences_from_the_reference_name_each_changed_setting():
    reference = {"depth": 4, "patch_size": 16}
    assert prose.differences({"depth": 4, "patch_size": 16, "other": 1}, reference) == \
        "These are the reference settings."
    assert prose.differences({"depth": 2, "patch_size": 8}, reference) == \
        "Settings that differ from the reference: depth 2 (reference 4); patch size 8 (reference 16)."


def test_convergence_counts_the_epochs_one_curve_is_ahead():
    assert prose.convergence([5, 6, 7, 8], [1, 2, 3, 9]) == {"epochs": 4, "ahead": 3}
    assert prose.convergence([1.0, 2.0, 3.0], [0.5]) == {"epochs": 1, "ahead": 1}


def test_pretrained_or_random_start():
    assert "ImageNet weights" in prose.resnet_start(True) and "fine-tuned" in prose.resnet_start(True)
    assert prose.resnet_start(False).startswith("trained from random initialisation")


def test_share_kept_under_attack():
    assert prose.kept_under_attack(40.0, 10.0) == "here the attacked top-1 is 25% of the clean top-1."
    assert "none of these images correctly" in prose.kept_under_attack(0.0, 0.0)


def test_psnr_side_of_the_imperceptible_level():
    assert prose.psnr_side(prose.SAME_LOOKING_PSNR + 0.5) == "above"
    assert prose.psnr_side(prose.SAME_LOOKING_PSNR) == "below"


def test_trading_epsilon_for_iterations_needs_a_significant_difference():
    assert prose.epsilon_trade(pair(5, 1)) == ""  # McNemar p = 0.219
    assert prose.epsilon_trade(pair(1, 20)).startswith("More iterations do not make up")
    assert prose.epsilon_trade(pair(20, 1)).startswith("More iterations more than make up")


def grid_row(steps, epsilon, hits):
    """A row of analysis.steps_grid on 10 images: the first `hits` reach the target (class 0) and are wrong,
    the others stay right (rank 0)."""
    reached = np.arange(10) < hits
    per_image = {"adv_top5": np.where(reached, 0, 2)[:, None].repeat(5, 1), "target": np.zeros(10, int),
                 "adv_rank": np.where(reached, 3, 0), "clean_top5": np.full((10, 5), 2)}
    per_image["clean_rank"] = np.zeros(10, int)
    return {"steps": steps, "epsilon": epsilon, "successes": hits, "success_images": 10, "psnr": 40.0,
            "num_images": 10, "per_image": per_image}


def test_epsilon_for_iterations_lists_the_diagonal():
    assert prose.epsilon_for_iterations([grid_row(10, 2 / 255, 5)]) == ""
    text = prose.epsilon_for_iterations([grid_row(10, 2 / 255, 5), grid_row(20, 1 / 255, 4)])
    assert text.startswith("Trading epsilon for iterations, 10 steps at epsilon 2.00/255 reach the target on 50.0%")
    assert "with top-1 60.0% [" in text
    assert "20 steps at epsilon 1.00/255 minus 10 steps at epsilon 2.00/255" in text
    assert "cannot tell the two apart" in text


def test_ahead_at_names_the_significant_epsilons_only():
    assert prose.ahead_at([(2, pair(5, 1)), (4, pair(20, 1)), (8, pair(1, 20))], 100) == \
        f"AdvSimpleNet is ahead, with p < {stats.SIGNIFICANCE:g}, at epsilon 4 (/255)."
    assert prose.ahead_at([(2, pair(5, 1))], 1000) == \
        "At none of these epsilons can this execution tell AdvSimpleNet ahead at this n (1,000 images)."


def test_settings_start_and_devices_of_adversarial_training():
    cfg, other = {"lr": 0.1, "optimizer": "sgd"}, {"lr": 0.05, "optimizer": "sgd"}
    assert prose.same_settings(cfg, other, ("lr", "optimizer")) == "It differs from this profile's SimpleNet in lr."
    assert prose.same_settings(cfg, cfg, ("lr",)).startswith("Apart from the epochs and the adversarial samples")
    assert "fine-tuned adversarially from the trained `simplenet` run" in prose.starting_point("simplenet", 70)
    assert prose.starting_point(None, 70) == "It starts from random weights, as in the reference."
    assert prose.devices_compared("cpu", "cpu") == "Both runs trained on the same device; "
    assert "mixes hardware with method" in prose.devices_compared("cpu", "cuda")
    assert prose.below_expected(2.0, 3) == "" and "load on the machine" in prose.below_expected(1.4, 3)


def test_an_epsilon_warm_up_is_said_only_when_there_is_one():
    assert prose.epsilon_warm_up(0) == ""
    assert "over the first 0.5 epoch(s)" in prose.epsilon_warm_up(0.5)


def test_crafting_against_the_reference_names_only_what_differs():
    reference = dict(num_steps=4, step_size=2 / 255, epsilon=8 / 255)
    assert prose.crafting_against_reference(dict(reference), reference) == ""
    assert prose.crafting_against_reference(dict(reference, step_size=0.5 / 255, epsilon=2 / 255), reference) == (
        "The reference crafts its training samples with step 2/255 and epsilon 8/255, so this AdvSimpleNet is "
        "trained for smaller perturbations than the reference's.")
    assert prose.crafting_against_reference(dict(reference, num_steps=7), reference) == \
        "The reference crafts its training samples with 4 steps."


def test_epochs_are_counted_in_words():
    assert (prose.epochs(1), prose.epochs(4)) == ("1 epoch", "4 epochs")


def test_short_commits():
    assert prose.short_commit("0123456789abcdef-dirty") == "0123456789+"
    assert prose.short_commit("0123456789abcdef") == "0123456789"


def test_facts_of_several_models_are_prefixed():
    assert prose.prefixed({"cnn": {"acc": 1, "gap": 2}, "vit": {"acc": 3}}) == \
        {"cnn_acc": 1, "cnn_gap": 2, "vit_acc": 3}
    assert prose.precision("fp32") == "IEEE fp32" and prose.precision("bf16") == "bf16 autocast"


class LoggedRun:
    """A finished run as accuracy_facts reads it: the trainer's logged metrics and history."""
    metrics = {"epochs": 3, "train_acc1": 40.0, "train_images": 50, "val_acc1": 30.0}
    history = pd.DataFrame({"epoch": [1, 2, 3], "val_acc1": [10.0, 20.0, 30.0], "val_images": [10, 10, 10]})


def test_accuracy_facts_format_the_validation_and_the_logged_training(monkeypatch):
    ranks = np.array([0, 0, 0, 1, 4, 9, 7, 2, 3, 0])  # the label's rank per image: 4 right at top-1, 8 at top-5
    monkeypatch.setattr(prose.analysis, "predictions", lambda run, device="auto": {"rank": ranks})
    facts = prose.accuracy_facts(LoggedRun())
    assert facts["n"] == 10 and facts["correct"].tolist() == (ranks == 0).tolist()
    assert facts["top1"] == stats.describe(4, 10) and facts["top1_cell"] == stats.interval_cell(4, 10)
    assert facts["top5_cell"] == stats.interval_cell(8, 10)
    assert facts["train"] == stats.describe(20, 50) and facts["train_cell"] == stats.interval_cell(20, 50)
    assert facts["gap"] == 10.0 and facts["epochs"] == 3 and facts["train_images"] == 50
    assert facts["first"] == stats.describe(1, 10) and facts["first_cell"] == stats.interval_cell(1, 10)


def test_attack_facts_format_clean_and_attacked_accuracy_and_success():
    per_image = {"clean_rank": np.array([0, 0, 0, 2]), "adv_rank": np.array([0, 3, 9, 9]),
                 "target": np.array([5, 5, 5, 5]), "adv_top5": np.array([[1] * 5, [5] * 5, [5] * 5, [2] * 5])}
    facts = prose.attack_facts({"num_images": 4, "successes": 2, "success_images": 4, "per_image": per_image})
    assert facts["clean1"].tolist() == [True, True, True, False] and facts["adv1"].tolist() == [True] + [False] * 3
    assert facts["clean5"].all() and facts["adv5"].tolist() == [True, True, False, False]
    assert facts["success"].tolist() == [False, True, True, False]
    assert facts["adv1_text"] == stats.describe(1, 4) and facts["clean1_cell"] == stats.interval_cell(3, 4)
    assert facts["success_text"] == stats.describe(2, 4) and facts["n"] == 4


def test_seeds_correct_and_provenance_facts(monkeypatch):
    ranks = {"a": np.array([0, 1, 0]), "b": np.array([2, 0, 0])}
    monkeypatch.setattr(prose.analysis, "predictions", lambda run, device="auto": {"rank": ranks[run.name]})
    seeds = [type("Seed", (LoggedRun,), {"name": name}) for name in ("a", "b")]
    assert [ok.tolist() for ok in prose.seeds_correct(seeds)] == [[True, False, True], [False, True, True]]
    run = type("Run", (), {"config": {"data_dir": "/x/miniplaces"}, "metrics": {"provenance": {"device": "a GPU"}}})
    assert prose.provenance_facts(run) == {"data": "`miniplaces`", "hardware": "a GPU"}
