"""lib/training/placement.py: the model on its device (SyncBatchNorm under torchrun: tests/test_distributed.py)."""
import torch
from torch import nn

from lib.training.placement import place_model


def bn_model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_one_process_keeps_the_model_and_its_batchnorm():
    model = bn_model()
    placed, net = place_model(model, {"compile": False}, torch.device("cpu"), torch.channels_last)
    assert placed is model and net is model and isinstance(model[1], nn.BatchNorm2d)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_compile_wraps_what_the_steps_call_and_leaves_the_weights_alone():
    model = bn_model()
    placed, net = place_model(model, {"compile": True}, torch.device("cpu"), torch.contiguous_format)
    assert placed is model and net is not model and net._orig_mod is model
    assert list(placed.state_dict()) == list(bn_model().state_dict())  # checkpoints keep their keys


def test_on_a_gpu_cudnn_benchmarks_its_convolutions(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(nn.Module, "to", lambda self, *args, **kwargs: self)  # no GPU here: moving is a no-op
    place_model(bn_model(), {"compile": False}, torch.device("cuda", 0), torch.contiguous_format)
    assert torch.backends.cudnn.benchmark is True
    torch.backends.cudnn.benchmark = False
    place_model(bn_model(), {"compile": False}, torch.device("cpu"), torch.contiguous_format)
    assert torch.backends.cudnn.benchmark is False
