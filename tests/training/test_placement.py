"""lib/training/placement.py: the model on its device; SyncBatchNorm under torchrun (CPU kernels)."""
import sys

import torch
from torch import nn

from lib.training.placement import place_model
from tests.training.launch import WORKER, torchrun


def bn_model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_one_process_keeps_the_model_and_its_batchnorm():
    model = bn_model()
    placed, net = place_model(model, {"compile": False}, torch.device("cpu"), torch.channels_last)
    assert placed is model and net is model and isinstance(model[1], nn.BatchNorm2d)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)


def test_compile_auto_is_left_to_the_trainer():
    model = bn_model()
    assert place_model(model, {"compile": "auto"}, torch.device("cpu"), torch.contiguous_format) == (model, model)


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


def test_batchnorm_under_two_processes_is_syncbatchnorm_over_the_global_batch(tmp_path):
    """2 processes with SyncBatchNorm (PyTorch's, on test-only CPU kernels) train exactly as 1 process on the same
    global batches: the BatchNorm statistics and the weights do not depend on the number of processes."""
    done = torchrun(WORKER, tmp_path, "syncbn")
    assert done.returncode == 0, done.stderr[-3000:]
    two = torch.load(tmp_path / "syncbn.pt", weights_only=True)
    assert "SyncBatchNorm" in two["layers"] and "BatchNorm2d" not in two["layers"]
    sys.path.insert(0, str(WORKER.parent))
    try:
        from ddp_worker import batchnorm_trainer
    finally:
        sys.path.remove(str(WORKER.parent))
    one = batchnorm_trainer(tmp_path / "one")
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in one.model.modules())  # one process: plain
    one.fit()
    for key, value in one.model.state_dict().items():
        assert torch.allclose(two["state"][key].float(), value.float(), atol=1e-5), key
