"""The bare GPU machine (docs/gpu.md) has no Jupyter stack, no torchattacks and no tensorboard. In child processes
where those cannot be imported (a sitecustomize.py on PYTHONPATH), the GPU check (--device cpu --quick: its tests
section collects every test module, as `pytest -m cuda tests` does on the GPU), `python -m lib train` and
`python -m lib train-all` on two fake devices run, and every section of the check passes. An import of the Jupyter
stack below lib/report/build.py, in lib or in a test module, fails here instead of on the GPU machine.
"""
import json
import os
import subprocess
import sys

import pytest

from lib.data.layout import PROJECT_ROOT
from lib.study import Study


# What the bare machine lacks; any other jupyter* package too (NoJupyter below).
BLOCKED = ("IPython", "ipykernel", "ipywidgets", "nbformat", "nbconvert", "nbclient", "papermill", "jupyter",
           "jupyter_client", "jupyter_core", "torchattacks", "tensorboard")

SITECUSTOMIZE = f'''"""Written by tests/test_bare_machine.py: what the bare GPU machine lacks cannot be imported."""
import sys

for name in {BLOCKED!r}:
    sys.modules[name] = None  # `import name` raises ModuleNotFoundError; importlib.util.find_spec(name) is None


class NoJupyter:
    """A meta-path finder: any other jupyter* package is not installed either."""

    def find_spec(self, name, path=None, target=None):
        if name.startswith("jupyter"):
            raise ModuleNotFoundError(f"No module named {{name!r}} (not on the bare GPU machine)", name=name)
        return None


sys.meta_path.insert(0, NoJupyter())
'''

BUDGET = 300  # seconds for the quick check here: generous for a loaded 2-core CPU (it took 22 s on a busy one)


def bare(*args, env, timeout=BUDGET + 60):
    """`python ARGS` from the project root without the blocked packages; the CompletedProcess (output as text)."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The environment of a bare machine's process: PYTHONPATH holds only the blocking sitecustomize.py, the results
    go to a temporary folder, and each process computes on one thread (on a shared 2-core CPU two threads per process
    made the quick check 3x slower: 70 s against 22)."""
    folder = tmp_path_factory.mktemp("bare")
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {**os.environ, "PYTHONPATH": str(folder), "MINIPLACES_OUTPUT": str(folder / "output"), "OMP_NUM_THREADS": "1"}


def test_the_blocked_packages_cannot_be_imported_and_look_absent(env):
    probe = ("import importlib.util\n"
             "for name in ('IPython', 'papermill', 'jupyter_server', 'torchattacks'):\n"
             "    try:\n        __import__(name)\n    except ModuleNotFoundError:\n        print(name, 'absent')\n"
             "print('tensorboard', importlib.util.find_spec('tensorboard'))")
    done = bare("-c", probe, env=env, timeout=120)
    assert done.stdout.split("\n") == ["IPython absent", "papermill absent", "jupyter_server absent",
                                       "torchattacks absent", "tensorboard None", ""], done.stderr


@pytest.fixture(scope="module")
def quick_check(env, tmp_path_factory):
    """The quick GPU check on the CPU without the blocked packages: (CompletedProcess, its JSON)."""
    out = tmp_path_factory.mktemp("gpu-check")
    done = bare("-m", "benchmarks.gpu_check", "--device", "cpu", "--quick", "--budget", BUDGET, "--out", out, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done, json.loads((out / "gpu_check.json").read_text())


def test_every_section_of_the_quick_check_passes_within_its_budget(quick_check):
    done, result = quick_check
    assert result["passed"] and result["budget_s"] == BUDGET and result["seconds"]["total"] <= BUDGET
    assert set(result["seconds"]) == {"tests", "conv", "experiments", "compile", "pipeline", "sanity", "estimate",
                                      "total"}
    for name in ("tests", "conv", "experiments", "compile", "pipeline", "sanity"):
        assert not (isinstance(result[name], dict) and {"error", "stopped"} & set(result[name])), result[name]
    rows = result["experiments"]
    assert all(row["images/s"] > 0 and row["TFLOP/s"] > 0 and row["steps"] == 1 for row in rows), rows
    assert result["compile"]["note"].startswith("skipped (a CPU")
    assert [row["path"] for row in result["pipeline"]] == ["DataLoader", "device-resident",
                                                            "device-resident + TrainAugment"]
    assert all(row["images/s"] > 0 and row["images"] == 1024 for row in result["pipeline"])
    sanity = result["sanity"]
    assert sanity["train steps"] == 96 // 16 and sanity["attacked images"] == 16 and sanity["attack TFLOP/s"] > 0
    assert "| simplenet | fp32 | 16 | 1 |" in done.stdout and "| simplenet (compiled) |" in done.stdout


def test_the_tests_section_collected_every_module_and_ran_the_cuda_tests_it_selects(quick_check):
    """On a CPU the selected (cuda) tests are skipped; the point is that every module was collected."""
    tests = quick_check[1]["tests"]
    counts = tests["counts"]
    assert tests["passed"] and set(counts) == {"skipped", "deselected"}, tests
    assert counts["skipped"] >= 10 and counts["deselected"] > 500


def test_train_and_train_all_run_every_seed_without_the_blocked_packages(env, tmp_path):
    done = bare("-m", "lib", "train-all", "--profile", "smoke", "--seeds", "2", "--gpus", "cpu,cpu", "--experiments",
                "simplenet", "--results-dir", tmp_path, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    outcomes = dict(line.split(None, 1) for line in done.stdout.splitlines() if line.startswith("  "))
    assert outcomes == {"simplenet": "finished", "simplenet-seed1": "finished"}, done.stdout
    logs = tmp_path / "train-all" / "smoke"
    assert sorted(path.name for path in logs.iterdir()) == ["simplenet-seed1.log", "simplenet.log"]
    study = Study("smoke", device="cpu", seeds=2)
    dirs = [study.run_dir("simplenet", replica, tmp_path) for replica in range(2)]
    stamps = [(path / "metrics.json").stat().st_mtime_ns for path in dirs]  # train-all trained both seeds
    runs = study.runs("simplenet", results_dir=tmp_path, progress=False)
    assert [run.dir for run in runs] == dirs and [run.config["seed"] for run in runs] == [0, 1]
    again = bare("-m", "lib", "train", "simplenet", "--profile", "smoke", "--device", "cpu", "--results-dir",
                 tmp_path, env=env)
    assert again.returncode == 0 and f"({dirs[0]})" in again.stdout, again.stderr[-3000:]
    assert [(path / "metrics.json").stat().st_mtime_ns for path in dirs] == stamps  # re-used, none trained again
