"""The experiment registry, cached runs and the command line."""
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

from lib import attacks, data, experiments
from lib.__main__ import main
from lib.core import devices
from lib.data.layout import PROJECT_ROOT
from lib.report import cache, measurements
from lib.study import parameters as study
from lib.study import settings
from lib.training import step_costs as stepcost


def test_config_resolution_order():
    cfg = experiments.config("simplenet_custom", "full", epochs=3, warmup_epochs=1)
    assert cfg["epochs"] == 3 and cfg["batch_size"] == 256 and cfg["model_kwargs"] == {"conv": "custom"}
    assert experiments.config("simplenet_custom", "full")["epochs"] == 10
    assert experiments.config("simplenet", "smoke")["image_size"] == experiments.PROFILES["smoke"]["image_size"]


@pytest.mark.parametrize("call, message", [
    (lambda: experiments.config("nope"), "unknown experiment 'nope'; valid experiments: .*simplenet"),
    (lambda: experiments.config("simplenet", "huge"),
     "unknown profile 'huge'; valid profiles: cpu-full, full, sample, smoke"),
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


def test_every_profile_says_what_it_is_and_how_many_images_it_attacks():
    for profile in experiments.PROFILES:
        assert experiments.PROFILE_SCOPES[profile] and experiments.Study(profile).seed_count >= 1
        experiments.attack_settings(profile)  # the default and the strong attacks' images and steps


def test_cpu_full_trains_on_every_image_at_reduced_scale():
    """cpu-full: the whole data set (no subset), smaller images and fewer epochs than full, attacks on all of it."""
    for name in experiments.EXPERIMENTS:
        small, full = experiments.config(name, "cpu-full"), experiments.config(name, "full")
        assert small["train_images"] is None and small["val_images"] is None
        assert small["image_size"] < full["image_size"] and small["epochs"] < full["epochs"]
    assert experiments.attack_settings("cpu-full")["images"] is None


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


def test_cli_unknown_experiment_exits_2_with_the_list(capsys):
    assert main(["train", "nope", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown experiment 'nope'") and "simplenet" in err


def test_cli_train_and_list(tmp_path, capsys):
    assert main(["train", "simplenet", "--profile", "smoke", "--epochs", "1", "--results-dir", str(tmp_path)]) == 0
    assert "val Acc@1" in capsys.readouterr().out
    run = experiments.Run(experiments.run_dir("simplenet", "smoke", {"epochs": 1}, results_dir=tmp_path))
    assert run.config["channels_last"] is True  # the registry's layout for a CNN
    assert main(["train", "simplenet", "--profile", "smoke", "--epochs", "1", "--no-channels-last",
                 "--results-dir", str(tmp_path)]) == 0
    plain = experiments.run_dir("simplenet", "smoke", {"epochs": 1, "channels_last": False}, results_dir=tmp_path)
    assert experiments.Run(plain).config["channels_last"] is False and plain != run.dir
    assert main(["list"]) == 0
    assert "simplenet_custom" in capsys.readouterr().out


def test_init_from_starts_from_another_runs_weights(tmp_path):
    adv = experiments.run("advsimplenet", "smoke", results_dir=tmp_path, progress=False, init_from="simplenet",
                          epochs=1, lr=1e-12, weight_decay=0.0)
    source = tmp_path / "runs" / "simplenet" / "smoke"
    assert adv.metrics["initialised_from"] == str(source)
    trained = experiments.Run(source).load_model().state_dict()
    # lr 1e-12: the optimizer leaves the weights (to float precision) where init_from put them
    for key, value in adv.load_model().state_dict().items():
        assert torch.allclose(value, trained[key], atol=1e-8), key


# ----------------------------------------------------------------------------- settings checked before any work

@pytest.mark.parametrize("flags, message", [
    (["--epochs", "-1"], "error: simplenet: epochs must be an integer >= 1, got -1"),
    (["--batch-size", "0"], "error: simplenet: batch_size must be an integer >= 1, got 0"),
    (["--batch-size", "97"], "error: simplenet: batch_size must be from 1 to the number of training images (96)"),
    (["--lr", "nan"], "error: simplenet: lr must be a finite number > 0, got nan"),
    (["--lr", "0"], "error: simplenet: lr must be a finite number > 0"),
    (["--weight-decay=-1e-4"], "error: simplenet: weight_decay must be a finite number >= 0"),
    (["--image-size", "16"], "error: simplenet: image_size must be an integer >= 32"),
    (["--epochs", "1"], "error: simplenet: warmup_epochs must be a number from 0 to epochs (1), got 5"),
    (["--amp", "fp8"], "error: simplenet: amp must be one of auto, bf16, off"),
    (["--profile", "nosuch"], "error: unknown profile 'nosuch'; valid profiles: cpu-full, full, sample, smoke"),
    (["--epochs", "two"], "error: argument --epochs: invalid int value: 'two'"),
])
def test_cli_bad_setting_is_one_line_exit_2_nothing_written(tmp_path, capsys, flags, message):
    profile = [] if "--profile" in flags else ["--profile", "full" if "--epochs" in flags and "1" in flags else "smoke"]
    try:
        code = main(["train", "simplenet", *profile, *flags, "--results-dir", str(tmp_path / "results")])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("settings, message", [
    (dict(warmup_epochs=3, epochs=2), "warmup_epochs must be a number from 0 to epochs"),
    (dict(optimizer="adam"), "optimizer must be one of sgd, adamw, got 'adam'"),
    (dict(epochs=2.5), "epochs must be an integer >= 1, got 2.5"),
    (dict(channels_last="yes"), "channels_last must be true or false"),
    (dict(init_from="nope"), "init_from must be null, an experiment"),
    (dict(init_from={"advsimplenet": {"init_from": "simplenet"}}), "must be a run that does not itself use init_from"),
    (dict(init_from={"simplenet": {"lr": -1}}), "simplenet: lr must be a finite number > 0"),
    (dict(train_batches=0), "train_batches must be an integer >= 1, or null"),
])
def test_config_checks_every_setting(settings, message):
    with pytest.raises(experiments.ConfigError, match=message):
        experiments.config("advsimplenet", "smoke", **settings)


def test_set_values_parse_as_json_or_yaml_scalars():
    overrides, attack = settings.parse_assignments([
        "simplenet.epochs=20", "simplenet.lr=1e-3", "simplenet.amp=off", "simplenet.model_kwargs.conv=custom",
        "advsimplenet.init_from={simplenet: {epochs: 20}}", "vit.train_images=null", "attack.epsilon=8"])
    assert overrides == {"simplenet": {"epochs": 20, "lr": 0.001, "amp": "off", "model_kwargs": {"conv": "custom"}},
                         "advsimplenet": {"init_from": {"simplenet": {"epochs": 20}}},
                         "vit": {"train_images": None}}
    assert attack == {"epsilon": 8}
    with pytest.raises(settings.ConfigError, match="--set takes EXPERIMENT.SETTING=VALUE"):
        settings.parse_assignments(["epochs=3"])


# ----------------------------------------------------------------------------- study parameters

def test_attack_settings_are_pixel_units_with_overrides_in_255ths():
    harness = experiments.attack_settings("sample")
    assert harness["default"]["epsilon"] == pytest.approx(0.1 * attacks.PIXEL_PER_NORMALIZED)
    assert harness["default"]["step_size"] == pytest.approx(harness["default"]["epsilon"] / 10)
    assert harness["images"] is None and experiments.attack_settings("smoke")["images"] == 16
    changed = experiments.attack_settings("sample", epsilon=8, steps=20, images=50)
    assert changed["default"] == {"num_steps": 20, "epsilon": pytest.approx(8 / 255),
                                  "step_size": pytest.approx(8 / 255 / 20)}
    assert changed["images"] == 50
    assert experiments.attack_settings("sample", step_size=2)["default"]["step_size"] == pytest.approx(2 / 255)
    assert experiments.attack_settings("full", dry_run=True)["images"] == experiments.DRY_RUN["attack_images"]
    attacks.PGDAttack(**changed["default"])  # accepted as they are
    # the stronger attacks: at the default's epsilon, on at most as many images as it
    assert harness["strong_images"] == experiments.STRONG_ATTACKS["images"]["sample"]
    assert changed["strong"]["epsilon"] == pytest.approx(8 / 255) and changed["strong_images"] == 50
    assert experiments.attack_settings("full")["strong"]["num_steps"] == 100
    assert experiments.attack_settings("full", dry_run=True)["strong_images"] == experiments.DRY_RUN["attack_images"]
    attacks.AutoPGD("ce", **changed["strong"])
    for bad, message in ((dict(eps=8), "unknown attack setting.*eps.*valid: epsilon"),
                         (dict(epsilon=0), "attack epsilon must be a number in \\(0, 255\\]"),
                         (dict(steps=0), "attack steps must be an integer >= 1")):
        with pytest.raises(settings.ConfigError, match=message):
            experiments.attack_settings("sample", **bad)


def test_describe_settings_states_every_change_and_a_dry_run():
    text = study.describe_settings("sample", {"simplenet": {"epochs": 20, "lr": 0.05}}, {"epsilon": 8}, dry_run=True)
    assert text.startswith("**DRY RUN**")
    assert "`simplenet`: epochs = 20 (registry: 8)" in text
    assert "lr" not in text  # 0.05 is the registry's value: not a change
    assert "`attack`: epsilon = 8/255 (registry: 5.76/255)" in text
    assert study.describe_settings("smoke").endswith("unchanged.")


def test_study_checks_its_overrides_and_keeps_them_per_experiment(tmp_path):
    with pytest.raises(experiments.ConfigError, match="unknown experiment 'simplenett'"):
        study.Study("smoke", overrides={"simplenett": {"epochs": 1}})
    with pytest.raises(experiments.ConfigError, match="unknown setting.*epoch of simplenet"):
        study.Study("smoke", overrides={"simplenet": {"epoch": 1}})
    plan = study.Study("smoke", overrides={"simplenet": {"epochs": 1}})
    assert plan.config("simplenet")["epochs"] == 1 and plan.config("improvednet")["epochs"] == 2
    # an overridden run keeps its own directory; the registry's source of init_from stays the registry's
    assert experiments.run_dir("simplenet", "smoke", {"epochs": 1}) != experiments.run_dir("simplenet", "smoke")


def test_seeds_train_one_cached_run_each_and_are_reused(tmp_path, monkeypatch):
    plan = study.Study("smoke", seeds=2, overrides={"simplenet": {"epochs": 1}})
    first = plan.runs("simplenet", results_dir=tmp_path, progress=False)
    assert [run.config["seed"] for run in first] == [0, 1] and first[0].dir != first[1].dir
    assert first[0].dir == plan.run("simplenet", results_dir=tmp_path, progress=False).dir  # seed 0: a plain run's
    assert not (first[0].history["val_acc1"].equals(first[1].history["val_acc1"])
                and first[0].steps["loss"].equals(first[1].steps["loss"]))  # another seed trains another network

    def no_training(*args, **kwargs):
        raise AssertionError("a cached seed was trained again")
    monkeypatch.setattr("lib.study.runs.Trainer.fit", no_training)
    again = study.Study("smoke", seeds=2, overrides={"simplenet": {"epochs": 1}}).runs(
        "simplenet", results_dir=tmp_path, progress=False)
    assert [run.dir for run in again] == [run.dir for run in first]


def test_seeds_default_per_profile_and_apply_to_compared_experiments_only():
    assert study.Study("sample").seed_count == experiments.SEEDS["sample"] == 1
    assert study.Study("full").seed_count == 3 and study.Study("full", seeds=2).seed_count == 2
    plan = study.Study("sample", seeds=3, overrides={"simplenet": {"seed": 5}})
    assert plan.replicas("simplenet") == 3 and plan.replicas("simplenet_custom") == 1
    assert [plan.config("simplenet", i)["seed"] for i in range(3)] == [5, 6, 7]
    # seed i of AdvSimpleNet (fine-tuned on the sample) starts from seed i of its source, with the source's settings
    assert plan.config("advsimplenet", 0)["init_from"] == "simplenet"
    assert plan.config("advsimplenet", 2)["init_from"] == {"simplenet": {"seed": 2}}
    assert plan.config("advsimplenet", 2)["seed"] == 2
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(experiments.ConfigError, match="seeds must be an integer >= 1"):
            study.Study("smoke", seeds=bad)
    text = study.describe_settings("sample", seeds=3)
    assert "`study`: seeds = 3 (registry: 1)" in text


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


def test_cnns_are_built_channels_last_and_compute_what_the_contiguous_model_computes():
    """Every CNN (native or custom convolution) trains channels_last; the layout changes no logits or gradients."""
    images = torch.rand(2, 3, 32, 32)
    for name in ("simplenet", "simplenet_custom", "improvednet"):
        cfg = experiments.config(name, "smoke")
        assert cfg["channels_last"]
        torch.manual_seed(0)
        fast = experiments.build_model(cfg)
        torch.manual_seed(0)
        plain = experiments.build_model(dict(cfg, channels_last=False))
        conv = next(m for m in fast.modules() if hasattr(m, "weight") and m.weight.dim() == 4)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
        outputs = [model(images) for model in (fast, plain)]
        torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-4, atol=1e-4)
        grads = [torch.autograd.grad(out.square().sum(), model.fc.weight)[0]
                 for out, model in zip(outputs, (fast, plain))]
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-4)
    assert not experiments.config("vit", "smoke")["channels_last"]


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
