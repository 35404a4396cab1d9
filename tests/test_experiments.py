"""The experiment registry, cached runs and the command line."""
import json
import os
import subprocess
import sys

import pytest
import torch

from lib import experiments
from lib.__main__ import main
from lib.data import PROJECT_ROOT


def test_config_resolution_order():
    cfg = experiments.config("simplenet_custom", "full", epochs=3, warmup_epochs=1)
    assert cfg["epochs"] == 3 and cfg["batch_size"] == 256 and cfg["model_kwargs"] == {"conv": "custom"}
    assert experiments.config("simplenet_custom", "full")["epochs"] == 10
    assert experiments.config("simplenet", "smoke")["image_size"] == experiments.PROFILES["smoke"]["image_size"]


@pytest.mark.parametrize("call, message", [
    (lambda: experiments.config("nope"), "unknown experiment 'nope'; valid experiments: .*simplenet"),
    (lambda: experiments.config("simplenet", "huge"), "unknown profile 'huge'; valid profiles: full, sample, smoke"),
    (lambda: experiments.config("simplenet", "smoke", epoch=3), "unknown setting.*epoch.*valid settings"),
])
def test_bad_names_list_the_valid_ones(call, message):
    with pytest.raises(experiments.ConfigError, match=message):
        call()


def test_every_experiment_builds_in_every_profile():
    for name in experiments.EXPERIMENTS:
        for profile in experiments.PROFILES:
            cfg = experiments.config(name, profile)
            if cfg["model"] == "resnet18":
                cfg["model_kwargs"] = {**cfg["model_kwargs"], "pretrained": False}
            assert experiments.build_model(cfg) is not None


def test_run_is_cached_by_configuration(tmp_path):
    first = experiments.run("simplenet", "smoke", results_dir=tmp_path, progress=False)
    assert first.dir == tmp_path / "runs" / "simplenet" / "smoke" and first.finished
    stamp = (first.dir / "metrics.json").stat().st_mtime_ns
    again = experiments.run("simplenet", "smoke", results_dir=tmp_path, progress=False)
    assert (again.dir / "metrics.json").stat().st_mtime_ns == stamp
    varied = experiments.run("simplenet", "smoke", results_dir=tmp_path, progress=False, epochs=1)
    assert varied.dir != first.dir and varied.metrics["epochs"] == 1
    forced = experiments.run("simplenet", "smoke", results_dir=tmp_path, progress=False, force=True)
    assert (forced.dir / "metrics.json").stat().st_mtime_ns != stamp
    kept = [p for p in first.dir.parent.iterdir() if p.name.startswith("smoke.forced-")]
    assert len(kept) == 1 and (kept[0] / "metrics.json").exists()
    model = forced.load_model(best=True)
    assert not model.training


def test_interrupted_run_resumes(tmp_path):
    whole = experiments.run("simplenet", "smoke", results_dir=tmp_path / "a", progress=False)
    part = experiments.run("simplenet", "smoke", results_dir=tmp_path / "b", progress=False, stop_after=1)
    assert not part.finished
    resumed = experiments.run("simplenet", "smoke", results_dir=tmp_path / "b", progress=False)
    assert resumed.metrics["val_loss"] == pytest.approx(whole.metrics["val_loss"], abs=1e-6)


def test_cli_unknown_experiment_exits_2_with_the_list(capsys):
    assert main(["train", "nope", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown experiment 'nope'") and "simplenet" in err


def test_cli_train_and_list(tmp_path, capsys):
    assert main(["train", "simplenet", "--profile", "smoke", "--epochs", "1", "--results-dir", str(tmp_path)]) == 0
    assert "val Acc@1" in capsys.readouterr().out
    assert main(["list"]) == 0
    assert "simplenet_custom" in capsys.readouterr().out


def test_torchrun_two_processes_on_gloo(tmp_path):
    """DistributedDataParallel on CPU: two ranks train, only rank 0 writes the run."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "lib",
           "train", "simplenet", "--profile", "smoke", "--results-dir", str(tmp_path)]
    done = subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("val Acc@1") == 1
    metrics = json.loads((tmp_path / "runs" / "simplenet" / "smoke" / "metrics.json").read_text())
    assert metrics["provenance"]["processes"] == 2
    assert [p.name for p in (tmp_path / "runs" / "simplenet").iterdir()] == ["smoke"]


def test_init_from_starts_from_another_runs_weights(tmp_path):
    adv = experiments.run("advsimplenet", "smoke", results_dir=tmp_path, progress=False, init_from="simplenet",
                          epochs=1, lr=1e-12, weight_decay=0.0)
    source = tmp_path / "runs" / "simplenet" / "smoke"
    assert adv.metrics["initialised_from"] == str(source)
    trained = experiments.Run(source).load_model().state_dict()
    # lr 1e-12: the optimizer leaves the weights (to float precision) where init_from put them
    for key, value in adv.load_model().state_dict().items():
        assert torch.allclose(value, trained[key], atol=1e-8), key
