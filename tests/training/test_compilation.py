"""lib/training/compilation.py: compile='auto' compiles only where the run pays it back, and falls back to eager."""
import json

import pytest
import torch
from torch import nn

from lib.training import compilation
from tests.training.toy_training import trainer


class Slowed(nn.Module):
    """`inner`, whose steps the clock of `stopwatch` says took `seconds` (`first` more the first time): a stand-in
    for a slower or faster step, and for a compilation."""

    def __init__(self, inner, seconds, first=0.0):
        super().__init__()
        self.inner, self.seconds, self.first, self.last = inner, seconds, first, None

    def forward(self, x):
        self.last, self.first = self.seconds + self.first, 0.0
        return self.inner(x)


def stopwatch(step, device):
    """lib.training.step_costs.timed by a clock that reads the stated seconds of the Slowed module stepped (any
    other module's steps take no time)."""
    step()
    return getattr(step.args[0], "last", 0.0)


@pytest.fixture(autouse=True)
def stated_seconds(monkeypatch):
    monkeypatch.setattr(compilation, "timed", stopwatch)


def model_and_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.Flatten(), nn.Linear(4 * 36, 5))
    return model.train(), (torch.rand(8, 3, 8, 8), torch.arange(8) % 5)


def fake_compile(seconds, calls, first=0.0):
    """A torch.compile stand-in: its 'compiled' module shares the weights of the model (inside a Slowed one) and
    sleeps `seconds` per step, `first` more on its first."""
    def compile(model):
        calls.append(model)
        return Slowed(getattr(model, "inner", model), seconds, first)
    return compile


def test_a_short_run_stays_eager_without_compiling(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", fake_compile(0.0, calls))
    model, batch = model_and_batch()
    result = compilation.measure(Slowed(model, 0.5), *batch, "fp32", remaining_steps=1000)  # 500 s of steps
    assert result["compiled"] is None and result["note"] == "a short run" and calls == []


@pytest.mark.parametrize("compiled_seconds, remaining, chosen", [(0.005, 10**6, True), (0.02, 10**6, False)])
def test_a_long_run_keeps_the_compiled_model_only_when_it_is_faster(monkeypatch, compiled_seconds, remaining, chosen):
    calls = []
    monkeypatch.setattr(torch, "compile", fake_compile(compiled_seconds, calls))
    model, batch = model_and_batch()
    slow = Slowed(model, 0.01)
    result = compilation.measure(slow, *batch, "fp32", remaining_steps=remaining)
    assert calls == [slow] and (result["compiled"] is not None) == chosen
    assert result["eager_s"] == 0.01 and result["compiled_s"] == compiled_seconds
    assert (result["payback_steps"] is None) == (not chosen)
    assert compilation.describe(result).startswith("compiled: the" if chosen else "eager: the")


def test_a_compilation_that_pays_back_only_after_the_run_ends_is_refused(monkeypatch):
    monkeypatch.setattr(compilation, "COMPILE_MIN_RUN_S", 0.0)
    monkeypatch.setattr(torch, "compile", fake_compile(0.01, [], first=10.0))
    model, batch = model_and_batch()
    result = compilation.measure(Slowed(model, 0.02), *batch, "fp32", remaining_steps=500)  # they save 5 s of 10
    assert result["compiled"] is None and result["note"] == "does not pay back"
    assert result["payback_steps"] == pytest.approx((10.01 - 0.02) / 0.01)


def test_a_failing_compilation_prints_one_line_and_trains_eager(monkeypatch, capsys):
    def broken(model):
        def step(images):
            raise RuntimeError("no C++ compiler found\nthe rest of a long message")
        return step
    monkeypatch.setattr(compilation, "COMPILE_MIN_RUN_S", 0.0)
    monkeypatch.setattr(torch, "compile", broken)
    model, batch = model_and_batch()
    model = Slowed(model, 0.01)
    net, choice = compilation.settle(model, model, batch, "fp32", remaining_steps=100)
    assert net is model and choice["compiled"] is False and choice["note"] == "torch.compile failed"
    assert capsys.readouterr().out == ("torch.compile failed here (RuntimeError: no C++ compiler found); "
                                       "training eager\n")


def test_measuring_leaves_weights_buffers_gradients_and_random_streams_alone(monkeypatch):
    monkeypatch.setattr(compilation, "COMPILE_MIN_RUN_S", 0.0)
    monkeypatch.setattr(torch, "compile", fake_compile(0.0, []))
    model, batch = model_and_batch()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    rng = torch.get_rng_state()
    compilation.measure(Slowed(model, 0.02), *batch, "fp32", remaining_steps=10**6)
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and torch.equal(torch.get_rng_state(), rng)


def test_the_trainer_records_its_choice_and_trains_with_the_compiled_model(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", fake_compile(0.0, calls))
    short = trainer(tmp_path / "short", compile="auto", epochs=1)
    choice = short.fit()["provenance"]["compile"]
    assert choice["compiled"] is False and choice["note"] == "a short run" and calls == []
    timed = {"eager_s": 2.0, "first_s": 3.0, "compiled_s": 1.0, "payback_steps": 1.0, "note": None}
    monkeypatch.setattr(compilation, "measure", lambda model, *args: {"compiled": Slowed(model, 0.0), **timed})
    long = trainer(tmp_path / "long", compile="auto", epochs=1)
    long.fit()
    saved = json.loads((tmp_path / "long" / "metrics.json").read_text())["provenance"]["compile"]
    assert saved == {**timed, "compiled": True} and isinstance(long.net, Slowed) and long.net.inner is long.model


def test_an_adversarial_run_counts_the_passes_that_craft_its_batches(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(compilation, "settle", lambda model, net, batch, precision, remaining, *ranks:
                        (seen.append(remaining), (net, {"compiled": False}))[1])
    for name, adversarial in (("plain", None), ("adversarial", dict(num_steps=4, step_size=0.01, epsilon=0.03))):
        run = trainer(tmp_path / name, compile="auto", epochs=2, adversarial=adversarial)
        run.resolve_compile()
    assert seen[1] == 5 * seen[0] > 0
