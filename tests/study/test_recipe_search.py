"""lib/study/recipe_search.py: the AdvSimpleNet recipe search scores on the tune split and chooses by its rule."""
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lib.report.claims import ACCURACY_MARGIN
from lib.study import recipe_search


def scores(*attacked):
    return {f"probe {i}": dict(clean_acc1=20.0, adv_acc1=value, num_images=1000) for i, value in enumerate(attacked)}


def test_the_rule_takes_the_best_attacked_accuracy_and_gives_ties_to_the_earlier_probe():
    margin = 100 * ACCURACY_MARGIN
    assert recipe_search.choose(scores(3.0, 7.0, 5.0)) == "probe 1"
    assert recipe_search.choose(scores(7.0 - margin, 7.0, 5.0)) == "probe 0"
    assert recipe_search.choose(scores(7.0 - 2 * margin, 7.0, 7.0)) == "probe 1"


def test_the_probe_table_gives_intervals_and_marks_the_choice():
    table = recipe_search.probe_table(scores(3.0, 7.0), "probe 1").splitlines()
    assert len(table) == 4 and table[3].startswith("| probe 1 | 20.0% [17.6, 22.6] (n = 1,000) | 7.0% [")
    assert table[3].endswith("| yes |") and table[2].endswith("|  |")


def test_the_probes_start_from_the_reference_crafting_and_never_read_validation_images(monkeypatch):
    assert list(recipe_search.PROBES.values())[0]["epsilon"] == pytest.approx(8 / 255)
    labels = torch.arange(100).repeat_interleave(12)
    asked = []

    def load_split(root, split, size, limit=None, num_workers=0):
        asked.append(split)
        return TensorDataset(torch.full((len(labels), 3, 8, 8), 128, dtype=torch.uint8), labels)

    class Probe:
        config = dict(data_dir="x", image_size=8)

        def load_model(self, device):
            return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 100)).to(device).eval()
    monkeypatch.setattr(recipe_search, "load_split", load_split)
    score = recipe_search.tune_score(Probe(), device="cpu")
    assert asked == ["train"] and score["num_images"] == 1000
    assert 0 <= score["adv_acc1"] <= score["clean_acc1"] <= 100


def test_the_cpu_full_recipe_is_one_of_the_probes_with_their_epochs_and_lr():
    from lib.study.registry import EXPERIMENTS
    recipe = EXPERIMENTS["advsimplenet"]["cpu-full"]
    assert recipe["adversarial"] in recipe_search.PROBES.values()
    assert (recipe["epochs"], recipe["lr"]) == (recipe_search.EPOCHS, recipe_search.LR)
