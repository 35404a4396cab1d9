"""lib/training/amp.py: amp 'auto' chooses bf16 from a measured speed-up and records it."""
import json

import pytest

from lib.core import devices
from lib.training import step_costs as stepcost
from tests.training.toy_training import trainer


def test_amp_auto_without_cpu_bf16_is_off_and_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(stepcost, "bf16_speedup", lambda *a: pytest.fail("no measurement without bf16 instructions"))
    trainer(tmp_path, amp="auto", epochs=1).fit()
    provenance = json.loads((tmp_path / "metrics.json").read_text())["provenance"]
    assert provenance["amp"] == "off" and provenance["amp_bf16_speedup"] is None


@pytest.mark.parametrize("speedup, choice", [(1.8, "bf16"), (0.73, "off")])
def test_amp_auto_on_a_bf16_cpu_follows_the_measured_speedup(tmp_path, monkeypatch, speedup, choice):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(stepcost, "bf16_speedup", lambda model, images, labels: speedup)
    run = trainer(tmp_path, amp="auto", epochs=2)
    run.fit(stop_after=1)
    provenance = trainer(tmp_path, amp="auto", epochs=2)
    monkeypatch.setattr(stepcost, "bf16_speedup", lambda *a: pytest.fail("a resumed run keeps its choice"))
    provenance.resume(tmp_path / "checkpoint.pth")
    metrics = provenance.fit()["provenance"]
    assert (metrics["amp"], metrics["amp_bf16_speedup"]) == (choice, speedup)
