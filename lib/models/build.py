"""Building a model from a configuration (plain data) of the registry."""
import torch
from torch import nn

from lib.core.errors import ConfigError, check_name
from lib.models import cnn, conv, vit


def build_model(cfg, pretrained=True):
    """The model of a configuration, freshly initialised (pretrained weights per model_kwargs; with
    pretrained=False never: only the layers, to load a run's trained weights into or to count them), its weights
    in channels_last memory format when cfg['channels_last'] (so that every use of it, training, evaluation,
    attacks and cost measurements, runs the layout it was trained in)."""
    layout = torch.channels_last if cfg["channels_last"] else torch.contiguous_format
    return _new_model(cfg, pretrained).to(memory_format=layout)


def _new_model(cfg, pretrained):
    kwargs = dict(cfg["model_kwargs"])
    if cfg["model"] == "resnet18" and not pretrained:
        kwargs["pretrained"] = False
    if cfg["model"] in ("simplenet", "improvednet"):
        ops = {"native": nn.Conv2d, "custom": conv.CustomConv2d}
        op = kwargs.pop("conv", "native")
        check_name("conv", op, ops)
        builder = cnn.SimpleNet if cfg["model"] == "simplenet" else cnn.ImprovedNet
        return builder(conv_op=ops[op], **kwargs)
    if cfg["model"] == "resnet18":
        return cnn.resnet18(**kwargs)
    if cfg["model"] == "vit":
        return vit.SimpleViT(img_size=cfg["image_size"], **kwargs)
    raise ConfigError(f"unknown model {cfg['model']!r}; valid models: simplenet, improvednet, resnet18, vit")
