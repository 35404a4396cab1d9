"""lib/core/devices.py: the device and the backend under torchrun, on fake GPUs."""
import pytest
import torch

from lib.core import devices
from lib.core.devices import DeviceError


# ----------------------------------------------------------------------------- device before the group (fake CUDA)

@pytest.fixture
def fake_two_gpus(monkeypatch):
    """Two visible 'GPUs', torchrun's environment for local rank 1, and a record of the calls made."""
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", device)))
    monkeypatch.setattr(devices.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(devices.dist, "init_process_group",
                        lambda backend, device_id=None: calls.append(("init_process_group", backend, device_id)))
    return calls


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_the_local_gpu_is_set_and_bound_before_joining(fake_two_gpus, device):
    assert devices.init_distributed(device) == torch.device("cuda", 1)
    gpu = torch.device("cuda", 1)
    assert fake_two_gpus == [("set_device", gpu), ("init_process_group", "nccl", gpu)]


def test_the_device_decides_the_backend(fake_two_gpus):
    assert devices.init_distributed("cpu") == torch.device("cpu")
    assert fake_two_gpus == [("init_process_group", "gloo", None)]


def test_an_explicit_gpu_under_torchrun_is_an_error(fake_two_gpus):
    with pytest.raises(DeviceError, match="every process on one GPU.*CUDA_VISIBLE_DEVICES"):
        devices.init_distributed("cuda:0")
    assert fake_two_gpus == []
