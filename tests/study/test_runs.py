"""lib/study/runs.py: cached runs, resumed, moved, shared between processes, damaged."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from lib import data, experiments
from lib.data.layout import PROJECT_ROOT
from lib.report import cache, measurements
from tests.training.launch import torchrun


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
    """amp is fixed: amp='auto' times a step of each precision, and on a loaded CPU two runs may choose apart."""
    whole = experiments.run("simplenet", "smoke", results_dir=tmp_path / "a", progress=False, amp="off")
    part = experiments.run("simplenet", "smoke", results_dir=tmp_path / "b", progress=False, stop_after=1, amp="off")
    assert not part.finished
    resumed = experiments.run("simplenet", "smoke", results_dir=tmp_path / "b", progress=False, amp="off")
    assert resumed.metrics["val_loss"] == pytest.approx(whole.metrics["val_loss"], abs=1e-6)


def test_init_from_starts_from_another_runs_weights(tmp_path):
    adv = experiments.run("advsimplenet", "smoke", results_dir=tmp_path, progress=False, init_from="simplenet",
                          epochs=1, lr=1e-12, weight_decay=0.0)
    source = tmp_path / "runs" / "simplenet" / "smoke"
    assert adv.metrics["initialised_from"] == str(source)
    trained = experiments.Run(source).load_model().state_dict()
    # lr 1e-12: the optimizer leaves the weights (to float precision) where init_from put them
    for key, value in adv.load_model().state_dict().items():
        assert torch.allclose(value, trained[key], atol=1e-8), key


def test_dry_run_is_capped_lives_apart_and_is_marked(tmp_path):
    dry = experiments.run("simplenet", "smoke", results_dir=tmp_path, progress=False, dry_run=True)
    assert dry.dir == tmp_path / "runs" / "simplenet" / "smoke-dryrun"
    assert not experiments.run_dir("simplenet", "smoke", results_dir=tmp_path).exists()
    cfg = dry.metrics["provenance"]["config"]
    caps = experiments.DRY_RUN
    assert cfg["dry_run"] is True and cfg["train_batches"] == caps["train_batches"]
    assert cfg["val_batches"] == caps["val_batches"] and dry.metrics["epochs"] == caps["epochs"]
    uncapped = 96 // 16  # smoke: 96 training images in batches of 16; log_every 1 logs every step
    assert dry.steps["step"].max() == caps["epochs"] * caps["train_batches"] < caps["epochs"] * uncapped
    assert experiments.config("simplenet", "smoke")["dry_run"] is False
    # offline, a dry run's ResNet-18 starts from scratch instead of stopping (the run says which happened)
    assert experiments.config("resnet18", "full", dry_run=True)["model_kwargs"]["pretrained"] == "auto"
    # a dry run's cost measurement times one step on DRY_RUN['measure_batch'] images, not the training batch
    vit = experiments.run("vit", "smoke", results_dir=tmp_path, progress=False, dry_run=True)
    costs = measurements.cnn_vs_vit(dry, vit, device="cpu")
    assert costs["batch"] == caps["measure_batch"] < vit.config["batch_size"]


# ----------------------------------------------------------------------------- runs that move, runs shared

def linked_copy(source, target):
    """A copy of a folder made of hard links (no decoded caches): another place, the same content."""
    shutil.copytree(source, target, copy_function=os.link, ignore=shutil.ignore_patterns(".cache", "__pycache__"))
    return target


def python(script, project, cwd=None, output=None):
    """A Python process running `script` in `cwd` with the project at `project` (its `lib`, and its results/
    and sample unless `output` names another folder for results/)."""
    env = {key: value for key, value in os.environ.items() if key != "MINIPLACES_OUTPUT"}
    env.update(PYTHONPATH=str(project), **({"MINIPLACES_OUTPUT": str(output)} if output else {}))
    return subprocess.Popen([sys.executable, "-c", script], cwd=cwd or project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_results_copied_into_another_checkout_are_reused(tmp_path):
    """results/ copied into a second checkout of the project (another project path, so another data path):
    the run and its cached analysis are re-used, nothing is set aside, and config.json names the data set's
    new place while metrics.json keeps where it was trained."""
    first = experiments.run("simplenet", "smoke", results_dir=tmp_path / "results", progress=False, epochs=1)
    cache.cached(first, "test", {"k": 1}, lambda: {"x": 1})
    checkout = tmp_path / "checkout"
    linked_copy(PROJECT_ROOT / "lib", checkout / "lib")
    linked_copy(data.SAMPLE_ROOT, checkout / "data" / "miniplaces-sample")
    shutil.copytree(tmp_path / "results", checkout / "results")
    script = ("from lib import experiments\nfrom lib.report import cache\n"
              "run = experiments.run('simplenet', 'smoke', progress=False, epochs=1)\n"
              "print(run.dir, cache.cached(run, 'test', {'k': 1}, lambda: 1 / 0)['x'])")
    out, err = python(script, checkout).communicate(timeout=300)
    copied = checkout / "results" / "runs" / "simplenet" / first.dir.name
    assert out.split() == [str(copied), "1"], err[-2000:]
    assert [p.name for p in copied.parent.iterdir()] == [first.dir.name]  # nothing set aside
    moved = experiments.Run(copied)
    assert moved.metrics == first.metrics  # not retrained
    assert moved.config["data_dir"] == str((checkout / "data" / "miniplaces-sample").resolve())
    assert moved.metrics["provenance"]["config"]["data_dir"] == str(data.SAMPLE_ROOT.resolve())
    assert moved.config["dataset"] == first.config["dataset"] == data.fingerprint(data.SAMPLE_ROOT)


def earlier_version_analysis(run, kind, settings, values):
    """An analysis as earlier versions cached it: under a hash that covered the data set's path."""
    identity = {"kind": kind, "settings": settings, "config": run.config,
                "finished_at": run.metrics["provenance"]["finished_at"]}
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
    path = run.dir / "analyses" / f"{kind}-{digest}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"kind": kind, "settings": settings, "values": values,
                                "provenance": {"run_finished_at": identity["finished_at"]}}))
    return path


def test_a_run_written_by_an_earlier_version_is_converted_not_set_aside(tmp_path):
    """config.json as earlier versions wrote it (no data set fingerprint; the absolute data path of another
    machine): the run and its analyses are re-used and converted once; a different data set is not."""
    run = experiments.run("simplenet", "smoke", results_dir=tmp_path, progress=False, epochs=1)
    config_file, finished = run.dir / "config.json", run.metrics
    legacy = {key: value for key, value in run.config.items() if key != "dataset"}
    legacy["data_dir"] = "/elsewhere/project/data/miniplaces-sample"
    config_file.write_text(json.dumps(legacy))
    old = earlier_version_analysis(experiments.Run(run.dir), "test", {"k": 1}, {"x": 2})
    again = experiments.run("simplenet", "smoke", results_dir=tmp_path, progress=False, epochs=1)
    assert again.metrics == finished and [p.name for p in run.dir.parent.iterdir()] == [run.dir.name]
    assert again.config == run.config  # converted: fingerprint added, the data set's place now
    assert cache.cached(again, "test", {"k": 1}, lambda: 1 / 0)["x"] == 2 and not old.exists()
    other = dict(again.config, dataset=dict(again.config["dataset"], lists="0" * 16))  # another data set
    config_file.write_text(json.dumps(other))
    retrained = experiments.run("simplenet", "smoke", results_dir=tmp_path, progress=False, epochs=1)
    assert retrained.config == run.config and retrained.metrics != finished
    kept, aside = sorted(p.name for p in run.dir.parent.iterdir())
    assert kept == run.dir.name and aside.startswith(f"{run.dir.name}.replaced-")


def test_a_run_is_reused_whatever_its_execution_settings_and_settings_added_since(tmp_path):
    """A finished run is re-used when only how it computed differs (loader processes, data on the device,
    torch.compile), and when its config.json lacks a setting added since (it counts at its default); a setting
    that changes what is computed retrains."""
    run = experiments.run("simplenet", "smoke", results_dir=tmp_path, progress=False, epochs=1)
    finished = run.metrics
    stored = {key: value for key, value in run.config.items() if key != "data_on_device"}  # an earlier version's
    (run.dir / "config.json").write_text(json.dumps(dict(stored, num_workers=3, compile=True)))
    again = experiments.run("simplenet", "smoke", results_dir=tmp_path, progress=False, epochs=1)
    assert again.metrics == finished and [p.name for p in run.dir.parent.iterdir()] == [run.dir.name]
    assert again.config == run.config  # updated to what this version resolves
    (run.dir / "config.json").write_text(json.dumps(dict(run.config, label_smoothing=0.1)))
    retrained = experiments.run("simplenet", "smoke", results_dir=tmp_path, progress=False, epochs=1)
    assert retrained.metrics != finished and len(list(run.dir.parent.iterdir())) == 2


def test_a_second_process_waits_for_the_first_and_reuses_its_run(tmp_path):
    """Two processes ask for one run: the second says it waits, then re-uses what the first trained."""
    ask = ("from lib import experiments\n{hold}"
           "run = experiments.run('simplenet', 'smoke', progress=False, epochs=1, device='cpu')\n"
           "print(run.dir, run.metrics['provenance']['finished_at'])")
    hold = ("import pathlib, time\nfrom lib.training.trainer import Trainer\nfit = Trainer.fit\n"
            "def held(self, *args):\n    pathlib.Path('training').touch()\n"
            "    while not pathlib.Path('go').exists():\n        time.sleep(0.1)\n    return fit(self, *args)\n"
            "Trainer.fit = held\n")
    first = python(ask.format(hold=hold), PROJECT_ROOT, cwd=tmp_path, output=tmp_path)
    deadline = time.monotonic() + 240
    while not (tmp_path / "training").exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-2000:]
        time.sleep(0.2)
    second = python(ask.format(hold=""), PROJECT_ROOT, cwd=tmp_path, output=tmp_path)
    line = second.stderr.readline()  # blocks until the second process says it waits
    assert line.startswith(f"waiting for another process working on {tmp_path / 'results' / 'runs'}"), line
    assert second.poll() is None  # still waiting: the first holds the run
    (tmp_path / "go").touch()
    outputs = [process.communicate(timeout=300) for process in (first, second)]
    assert [process.returncode for process in (first, second)] == [0, 0], outputs[0][1][-2000:]
    assert outputs[0][0].split() == outputs[1][0].split()  # the same finished run
    path = experiments.run_dir("simplenet", "smoke", {"epochs": 1}, results_dir=tmp_path / "results")
    assert outputs[0][0].split()[0] == str(path) and [p.name for p in path.parent.iterdir()] == [path.name]


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    """The run's lock held by a process that was killed: the next request trains at once."""
    path = experiments.run_dir("simplenet", "smoke", {"epochs": 1}, results_dir=tmp_path)
    lock = path.parents[1] / ".locks" / f"simplenet.{path.name}.lock"
    script = (f"import os, signal\nfrom lib.core.locks import exclusive\n"
              f"with exclusive({str(lock)!r}, 'waiting'):\n    os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, timeout=120)
    assert killed.returncode == -signal.SIGKILL and lock.read_text().strip().isdigit()  # it held the lock
    run = experiments.run("simplenet", "smoke", results_dir=tmp_path, progress=False, epochs=1)
    assert run.finished


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    return experiments.run("simplenet", "smoke", results_dir=tmp_path_factory.mktemp("whole"), progress=False,
                           amp="off")  # amp 'auto' times a step to choose: both runs in one precision


def truncate(checkpoint):
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])


def not_a_checkpoint(checkpoint):
    checkpoint.write_text("not a checkpoint\n")


def another_model(checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    state["model"] = experiments.build_model(experiments.config("improvednet", "smoke")).state_dict()
    torch.save(state, checkpoint)


@pytest.mark.parametrize("damage", [truncate, not_a_checkpoint, another_model])
def test_a_damaged_checkpoint_is_named_kept_and_the_run_restarts(whole_run, tmp_path, capfd, damage):
    """An interrupted run whose checkpoint cannot be read or belongs to another model: one line names it and says
    what happens, the file is kept aside, and the run trains from scratch to an uninterrupted run's result."""
    part = experiments.run("simplenet", "smoke", results_dir=tmp_path, progress=False, stop_after=1, amp="off")
    damage(part.dir / "checkpoint.pth")
    damaged = (part.dir / "checkpoint.pth").read_bytes()
    capfd.readouterr()
    done = experiments.run("simplenet", "smoke", results_dir=tmp_path, progress=False, amp="off")
    lines = [line for line in capfd.readouterr().err.splitlines() if "cannot resume" in line]
    assert len(lines) == 1 and lines[0].startswith(f"cannot resume: {part.dir / 'checkpoint.pth'} ")
    assert "the run restarts from scratch" in lines[0]
    [aside] = part.dir.glob("damaged-*")
    assert (aside / "checkpoint.pth").read_bytes() == damaged and (aside / "history.csv").exists()
    assert done.metrics["val_loss"] == pytest.approx(whole_run.metrics["val_loss"], abs=1e-6)
    assert done.history["epoch"].tolist() == whole_run.history["epoch"].tolist()


def test_a_finished_run_with_damaged_weights_says_how_to_retrain(whole_run, tmp_path):
    run = experiments.Run(shutil.copytree(whole_run.dir, tmp_path / "run"))
    truncate(run.dir / "checkpoint.pth")
    with pytest.raises(experiments.CheckpointError, match="is truncated or not a checkpoint .*force=True"):
        run.load_model()


def test_a_torchrun_run_is_written_once_and_reused_by_a_single_process(tmp_path):
    """`torchrun -m lib train` on gloo: both ranks train, only rank 0 reports and writes the run, which a
    later single-process call finds finished and re-uses."""
    done = torchrun("-m", "lib", "train", "simplenet", "--profile", "smoke", "--device", "cpu",
                    "--results-dir", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("val Acc@1") == 1
    path = tmp_path / "runs" / "simplenet" / "smoke"
    stamp = (path / "metrics.json").stat().st_mtime_ns
    again = experiments.run("simplenet", "smoke", results_dir=tmp_path, device="cpu", progress=False)
    assert again.dir == path and again.metrics["provenance"]["processes"] == 2
    assert (path / "metrics.json").stat().st_mtime_ns == stamp
    assert [p.name for p in path.parent.iterdir()] == ["smoke"]  # nothing set aside, nothing retrained


def test_the_adversarial_setting_builds_the_crafting_hook_with_its_epsilon_warm_up():
    cfg = experiments.config("advsimplenet", "smoke")
    assert experiments.input_hook(cfg).ramp_epochs == 0
    cfg["adversarial"] = dict(cfg["adversarial"], ramp_epochs=0.5)
    hook = experiments.input_hook(cfg)
    assert hook.ramp_epochs == 0.5 and hook.attack.epsilon == cfg["adversarial"]["epsilon"]
    assert experiments.input_hook(experiments.config("simplenet", "smoke")) is None
