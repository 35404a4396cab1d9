"""The data section's facts and views (lib.report.sections.dataset) on a tiny data set cut from the sample."""
import pytest
import torch

pytest.importorskip("IPython")  # lib.report.prose displays Markdown

from lib import data
from lib.report.sections import dataset
from lib.study import resolve


def test_dataset_facts_count_images_and_classes(tiny):
    train, val = data.MiniPlaces(tiny, "train"), data.MiniPlaces(tiny, "val")
    settings = resolve.config("simplenet", "smoke", str(tiny))
    facts = dataset.dataset_facts(settings, train, val, "smoke")
    assert (facts["train"], facts["val"], facts["classes"]) == (6, 3, 100)
    assert dataset.class_counts(train)[:3].tolist() == [2, 2, 2] and int(dataset.class_counts(train).sum()) == 6
    assert facts["train_span"] == "0-2" and facts["size"] == settings["image_size"]


def test_examples_are_evenly_spaced_with_readable_names(tiny):
    val = data.MiniPlaces(tiny, "val")
    images, names, picks = dataset.examples(val, 3)
    assert picks == [0, 1, 2] and len(images) == 3
    assert all(image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1 for image in images)
    assert names[0] == dataset.class_name(val, val[0][1]) and "/" not in names[0]


def test_augmented_views_start_with_the_validation_view_and_repeat_for_a_seed(tiny):
    image = data.MiniPlaces(tiny, "val")[0][0]
    views = dataset.augmented_views(image, 32, 4)
    assert views.shape == (5, 3, 32, 32)
    side = data.base_size(32)
    base = torch.nn.functional.interpolate(image[None].float(), size=side, mode="bilinear",
                                           antialias=True).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(views[0], data.EvalTransform(32)(base)[0])
    assert torch.equal(views, dataset.augmented_views(image, 32, 4))
    assert not torch.equal(views[1], views[2])


def test_augmentation_facts_describe_the_trainers_augment():
    facts = dataset.augmentation_facts(64)
    augment = data.TrainAugment(64)
    assert facts["side"] == data.base_size(64) and facts["rotation"] == augment.max_rotation
    assert facts["flip"] == ("a horizontal flip" if augment.flip else "no flip")
