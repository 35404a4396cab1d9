"""Tests for lib.models.cnn: SimpleNet, ImprovedNet and the ResNet-18 builder (shapes, sizes, learning, weights)."""
import urllib.error

import pytest
import torch
import torch.nn.functional as F
import torchvision

from lib.data.transforms import Normalize
from lib.models.cnn import ImprovedNet, SimpleNet, resnet18
from lib.models.conv import CustomConv2d


BUILDERS = {
    "simplenet": lambda n: SimpleNet(num_classes=n),
    "simplenet-custom": lambda n: SimpleNet(CustomConv2d, num_classes=n),
    "improvednet": lambda n: ImprovedNet(num_classes=n),
    "resnet18": lambda n: resnet18(num_classes=n),
}


def conv_params(c_in, c_out, kernel, bias=True):
    return c_in * c_out * kernel * kernel + (c_out if bias else 0)


def bottleneck_params(c_in, c_mid, c_out, batch_norm):
    convs = [(c_in, c_mid, 1), (c_mid, c_mid, 3), (c_mid, c_out, 1)]
    return sum(conv_params(a, b, k, bias=not batch_norm) + (2 * b if batch_norm else 0) for a, b, k in convs)


def bottleneck_cnn_params(num_classes, batch_norm):
    stem = conv_params(3, 64, 7, bias=not batch_norm) + (2 * 64 if batch_norm else 0)
    return (stem + bottleneck_params(64, 64, 256, batch_norm) + bottleneck_params(256, 128, 512, batch_norm)
            + 512 * num_classes + num_classes)


def resnet18_params(num_classes):
    def block(c_in, c_out):  # two 3x3 conv + BN; a 1x1 conv + BN shortcut when the width changes
        shortcut = conv_params(c_in, c_out, 1, bias=False) + 2 * c_out if c_in != c_out else 0
        return conv_params(c_in, c_out, 3, False) + conv_params(c_out, c_out, 3, False) + 4 * c_out + shortcut
    stages = sum(block(c_in, c_out) + block(c_out, c_out) for c_in, c_out in [(64, 64), (64, 128), (128, 256),
                                                                             (256, 512)])
    return conv_params(3, 64, 7, bias=False) + 2 * 64 + stages + 512 * num_classes + num_classes


@pytest.mark.parametrize("name", BUILDERS)
@pytest.mark.parametrize("size", [64, 128, (96, 80)])
def test_output_shape_and_normalize_first(name, size):
    model = BUILDERS[name](100)
    x = torch.rand(2, 3, *((size, size) if isinstance(size, int) else size))
    with torch.no_grad():
        assert model(x).shape == (2, 100)
    assert isinstance(model.normalize, Normalize) and next(model.children()) is model.normalize


@pytest.mark.parametrize("name,expected", [
    ("simplenet", bottleneck_cnn_params(100, batch_norm=False)),
    ("simplenet-custom", bottleneck_cnn_params(100, batch_norm=False)),
    ("improvednet", bottleneck_cnn_params(100, batch_norm=True)),
    ("resnet18", resnet18_params(100)),
])
def test_parameter_count(name, expected):
    assert sum(p.numel() for p in BUILDERS[name](100).parameters()) == expected


def test_resnet18_param_formula_matches_torchvision_s_published_count():
    assert resnet18_params(1000) == 11_689_512  # torchvision's documented ResNet-18 size


def test_custom_conv_simplenet_computes_what_the_native_one_does():
    torch.manual_seed(0)
    native, custom = SimpleNet(num_classes=10).double(), SimpleNet(CustomConv2d, num_classes=10).double()
    custom.load_state_dict(native.state_dict())
    x, y = torch.rand(2, 3, 40, 36, dtype=torch.float64), torch.tensor([1, 7])
    losses = [F.cross_entropy(m(x), y) for m in (native, custom)]
    torch.testing.assert_close(losses[1], losses[0])
    for loss in losses:
        loss.backward()
    for (name, a), b in zip(native.named_parameters(), custom.parameters()):
        torch.testing.assert_close(b.grad, a.grad, msg=name)


@pytest.mark.parametrize("name", BUILDERS)
def test_a_few_sgd_steps_lower_the_loss_on_a_fixed_batch(name):
    torch.manual_seed(0)
    model = BUILDERS[name](10)
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8) % 10
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(8):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < losses[0] - 0.03, losses


@pytest.fixture
def offline_hub(tmp_path, monkeypatch):
    """An empty torch hub cache under tmp_path, and downloads that fail as they do offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def no_network(url, dst, *args, **kwargs):
        raise urllib.error.URLError("network unreachable")
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "hub" / "checkpoints"


def test_pretrained_offline_without_cache_names_the_file_and_the_directory(offline_hub):
    with pytest.raises(FileNotFoundError) as error:
        resnet18(pretrained=True)
    assert "resnet18-f37072fd.pth" in str(error.value) and str(offline_hub) in str(error.value)


def test_pretrained_auto_offline_trains_from_scratch_and_says_so(offline_hub):
    with pytest.warns(UserWarning, match="from scratch"):
        model = resnet18(pretrained="auto")
    assert model.pretrained_source.startswith("scratch (weights unavailable offline")
    assert "resnet18-f37072fd.pth" in model.pretrained_source


@pytest.mark.parametrize("pretrained", [True, "auto"])
def test_pretrained_weights_load_from_the_hub_cache(offline_hub, pretrained):
    torch.manual_seed(1)
    cached = torchvision.models.resnet18().state_dict()
    offline_hub.mkdir(parents=True)
    torch.save(cached, offline_hub / "resnet18-f37072fd.pth")
    model = resnet18(num_classes=7, pretrained=pretrained)
    assert model.pretrained_source == "imagenet"
    assert torch.equal(model.net.conv1.weight, cached["conv1.weight"])
    assert torch.equal(model.net.layer4[1].bn2.running_var, cached["layer4.1.bn2.running_var"])
    assert model.net.fc.out_features == 7


def test_resnet18_arguments_are_checked():
    assert resnet18(pretrained=False).pretrained_source == "scratch"
    with pytest.raises(ValueError, match="pretrained"):
        resnet18(pretrained="imagenet")
    with pytest.raises(ValueError, match="num_classes"):
        SimpleNet(num_classes=0)
