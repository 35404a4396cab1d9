"""lib/report/measurements.py: the training-step costs compared in one precision."""
import json

import pytest

from lib import experiments
from lib.core import devices
from lib.report import measurements
from lib.training import step_costs as stepcost


@pytest.fixture(scope="module")
def conv_runs(tmp_path_factory):
    """Dry smoke runs of SimpleNet with the native and the custom convolution."""
    results = tmp_path_factory.mktemp("results")
    return [experiments.run(name, "smoke", results_dir=results, progress=False, dry_run=True, device="cpu")
            for name in ("simplenet", "simplenet_custom")]


@pytest.mark.parametrize("amp,native_bf16,precision", [("bf16", True, "bf16"), ("bf16", False, "fp32"),
                                                       ("off", True, "fp32")])
def test_a_cost_is_measured_in_the_precision_its_run_trained_in(conv_runs, monkeypatch, amp, native_bf16, precision):
    """Both models of a comparison in one precision: the run's, unless the measuring device would only emulate
    bf16; the result records it."""
    runs = conv_runs
    for run in runs:
        metrics = run.metrics
        metrics["provenance"]["amp"] = amp
        (run.dir / "metrics.json").write_text(json.dumps(metrics))
    asked = []
    compare = stepcost.compare_training_steps
    monkeypatch.setattr(stepcost, "compare_training_steps",
                        lambda *args, precision, **kwargs: asked.append(precision) or compare(
                            *args, precision="fp32", **kwargs))  # bf16 would be emulated (slow) on this CPU
    monkeypatch.setattr(devices, "has_native_bf16", lambda device: native_bf16)
    costs = measurements.conv_costs(*runs, device="cpu", force=True)
    assert costs["precision"] == precision and asked == [precision]
