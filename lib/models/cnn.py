"""The report's CNNs: SimpleNet (baseline), ImprovedNet (BatchNorm) and a ResNet-18 builder.

Every model takes pixel images (B, 3, H, W) in [0, 1], normalises them itself with a first
``Normalize`` module, and returns logits (B, num_classes). Any input size >= 32 works: the
networks end in global average pooling.
"""
from collections import OrderedDict
from pathlib import Path
import re
import urllib.error
from urllib.parse import urlparse
import warnings

import torch
from torch import nn
import torchvision
from torchvision.models import ResNet18_Weights

from lib.data.transforms import Normalize


IMAGENET_WEIGHTS = ResNet18_Weights.IMAGENET1K_V1


def bottleneck(conv_op, in_channels, mid_channels, out_channels, batch_norm):
    """1x1 reduce, 3x3, 1x1 expand; each conv followed by (BatchNorm +) ReLU.

    (B, in_channels, H, W) -> (B, out_channels, H, W). Convs before a BatchNorm have no bias.
    """
    layers = []
    widths = [in_channels, mid_channels, mid_channels, out_channels]
    for c_in, c_out, kernel in zip(widths, widths[1:], (1, 3, 1)):
        layers.append(conv_op(c_in, c_out, kernel, padding=kernel // 2, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _BottleneckCNN(nn.Module):
    """7x7/2 stem conv (64) + ReLU + 3x3/2 max-pool; bottleneck 64->64->256; 3x3/2 max-pool;
    bottleneck 256->128->512; global average pool; FC 512->num_classes.

    With batch_norm, every conv is followed by BatchNorm before its ReLU.
    conv_op: a class with nn.Conv2d's constructor (nn.Conv2d or lib.models.conv.CustomConv2d).
    """

    def __init__(self, conv_op, num_classes, batch_norm):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.normalize = Normalize()
        stem = [conv_op(3, 64, 7, stride=2, padding=3, bias=not batch_norm)]
        stem += [nn.BatchNorm2d(64)] if batch_norm else []
        self.features = nn.Sequential(
            *stem, nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1),
            bottleneck(conv_op, 64, 64, 256, batch_norm), nn.MaxPool2d(3, stride=2, padding=1),
            bottleneck(conv_op, 256, 128, 512, batch_norm),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(512, num_classes)
        self._init_convs()

    def _init_convs(self):
        """He-normal conv weights (fan_in, ReLU gain) and zero biases, for either conv_op.

        Without BatchNorm, PyTorch's default conv init shrinks the signal at every layer and
        SimpleNet stays at chance level for many epochs; He init keeps its variance constant.
        """
        for module in self.features.modules():
            if hasattr(module, "weight") and module.weight is not None and module.weight.dim() == 4:
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x):
        """x: pixels (B, 3, H, W) in [0, 1] -> logits (B, num_classes)."""
        return self.fc(self.features(self.normalize(x)))


class SimpleNet(_BottleneckCNN):
    """The report's baseline CNN, without BatchNorm (REFERENCE.md section 1)."""

    def __init__(self, conv_op=nn.Conv2d, num_classes=100):
        super().__init__(conv_op, num_classes, batch_norm=False)


class ImprovedNet(_BottleneckCNN):
    """SimpleNet's layout with BatchNorm after every conv (REFERENCE.md section 1)."""

    def __init__(self, conv_op=nn.Conv2d, num_classes=100):
        super().__init__(conv_op, num_classes, batch_norm=True)


def imagenet_weights_path():
    """Where torch's hub cache keeps the ResNet-18 ImageNet weights (the file may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(IMAGENET_WEIGHTS.url).path).name


def load_imagenet_weights():
    """ResNet-18 ImageNet state_dict from the torch hub cache, downloading it there if missing.

    Raises FileNotFoundError naming the file and the directory to put it in when it is not
    cached and cannot be downloaded (e.g. offline).
    """
    path = imagenet_weights_path()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        hash_prefix = re.search(r"-([a-f0-9]+)\.", path.name).group(1)
        try:
            torch.hub.download_url_to_file(IMAGENET_WEIGHTS.url, str(path), hash_prefix)
        except (urllib.error.URLError, OSError, RuntimeError) as error:
            raise FileNotFoundError(
                f"ResNet-18 ImageNet weights are not cached and could not be downloaded ({error}). "
                f"Download {IMAGENET_WEIGHTS.url} on a machine with internet access and put the "
                f"file {path.name} in {path.parent} (set TORCH_HOME to use another cache), "
                "or train from scratch with pretrained=False.") from error
    return torch.load(path, map_location="cpu", weights_only=True)


def resnet18(num_classes=100, pretrained=False):
    """torchvision ResNet-18 with its FC replaced by 512 -> num_classes, behind a Normalize.

    pretrained: False (random init), True (ImageNet weights, else FileNotFoundError) or
    'auto' (ImageNet weights when cached or downloadable, else random init with a warning).
    The returned model's ``pretrained_source`` says which happened: 'imagenet', 'scratch' or
    'scratch (weights unavailable offline: ...)'.
    """
    if not (isinstance(pretrained, bool) or pretrained == "auto"):
        raise ValueError(f"pretrained must be False, True or 'auto', got {pretrained!r}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    net = torchvision.models.resnet18(weights=None)
    source = "scratch"
    if pretrained:
        try:
            net.load_state_dict(load_imagenet_weights())
            source = "imagenet"
        except FileNotFoundError as error:
            if pretrained is True:
                raise
            warnings.warn(f"training ResNet-18 from scratch: {error}", stacklevel=2)
            source = f"scratch (weights unavailable offline: {imagenet_weights_path()} missing)"
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    model = nn.Sequential(OrderedDict(normalize=Normalize(), net=net))
    model.pretrained_source = source
    return model
