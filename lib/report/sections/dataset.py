"""The data section (notebook 00): the data set's size and classes, example images and the training augmentation
as the trainer applies it."""
import torch

from lib import data
from lib.report import prose


def class_counts(dataset):
    """Images per class of a lib.data.MiniPlaces split: int64 (classes,)."""
    return torch.bincount(torch.tensor(dataset.targets), minlength=len(dataset.classes))


def dataset_facts(settings, train_set, val_set, profile):
    """Facts on the data set of a resolved configuration `settings`: name, train / val / classes counts, the
    per-class ranges train_span / val_span, the profile, the training image size and batch, and subset (a
    clause naming a training subset, or empty)."""
    return dict(name=prose.dataset_name(settings), train=len(train_set), val=len(val_set),
                classes=len(train_set.classes), train_span=prose.span(class_counts(train_set)),
                val_span=prose.span(class_counts(val_set)), profile=profile, size=settings["image_size"],
                batch=settings["batch_size"], subset=prose.subset(settings))


def class_name(dataset, label):
    """The readable name of class `label` ('/a/abbey' -> 'abbey')."""
    return dataset.classes[label].strip("/")[2:]


def examples(dataset, count):
    """`count` evenly spaced images of `dataset` with their class names: (images, float [0, 1] (3, H, W) each;
    names; indices)."""
    picks = torch.linspace(0, len(dataset) - 1, count).long().tolist()
    shown = [dataset[i] for i in picks]
    return [image.float() / 255 for image, _ in shown], [class_name(dataset, label) for _, label in shown], picks


def augmentation_facts(size):
    """Facts on lib.data.TrainAugment(size): side (the cached side, px), size, rotation (degrees), area (% of the
    rotated rectangle), aspect, jitter (multiplicative range per channel) and flip (a phrase)."""
    augment = data.TrainAugment(size)
    return dict(side=data.base_size(size), size=size, rotation=augment.max_rotation,
                area=prose.between(augment.scale, 100), aspect=prose.between(augment.ratio),
                jitter=prose.between(augment.jitter), flip="a horizontal flip" if augment.flip else "no flip")


def augmented_views(image, size, count, seed=0):
    """The validation view of `image` (uint8 (3, H, W)) at `size` px followed by `count` training augmentations of
    it, as the trainer draws them from the decoded cache's side: uint8 (count + 1, 3, size, size)."""
    side = data.base_size(size)
    base = torch.nn.functional.interpolate(image[None].float(), size=side, mode="bilinear",
                                           antialias=True).round().clamp(0, 255).to(torch.uint8)
    torch.manual_seed(seed)
    augmented = data.TrainAugment(size)(base.repeat(count, 1, 1, 1))
    return torch.cat([data.EvalTransform(size)(base), augmented])
