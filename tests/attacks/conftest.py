"""Fixtures of the attack tests: one thread for tiny tensors, a small trained classifier."""
import pytest
import torch

from tests.attacks.toy_models import mlp, prototype_data, train


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tensors here are tiny: one thread is faster and steadier on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    return train(mlp(10), prototype_data(1024, seed=1), steps=150)
