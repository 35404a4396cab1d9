"""Training every run a profile's report asks for, one per GPU at once: `python -m lib train-all --profile full
--gpus 0,1,2,3`.

The runs are those of `Study(profile, seeds=...)`: one per experiment, and one per training seed of each
experiment behind a comparative finding (registry.SEEDED; the profile's seed count unless `seeds` is given, as
`python -m lib report` counts them). Each runs as its own `python -m lib train NAME --replica I` process on one GPU
(CUDA_VISIBLE_DEVICES), writing the run directory the report re-uses, its output in a log file. A run that starts
from another one's weights (init_from: seed i of AdvSimpleNet from seed i of SimpleNet) waits until that run has
finished, and is not started when it failed. A terminal line per GPU shows the run on it and its epochs so far.
Each process runs in a session of its own: Ctrl-C (SIGINT) or SIGTERM reaches this one, which passes it on to the
running ones (each saves the step it reached, lib.core.interrupt), starts no more and ends with Interrupted once
they have stopped; the same signal again stops them at once.
"""
import os
from pathlib import Path
import subprocess
import sys
import time
from typing import NamedTuple

from tqdm.auto import tqdm

from lib.core.devices import DeviceError
from lib.core.interrupt import Interrupted, StoppedAtOnce, requested, signal_name, stop_requests
from lib.core.progress import _history
from lib.study.parameters import Study
from lib.study.registry import EXPERIMENTS, RESULTS_DIR
from lib.study.resolve import _init_source, run_dir


STOPPED = (130, 143, -2, -15)  # exit statuses of a `python -m lib train` stopped by SIGINT or SIGTERM


class Job(NamedTuple):
    """One run of a plan: experiment `name`, its `replica`-th training seed, the label of the job whose run it
    starts from (or None), its run directory and epochs."""
    name: str
    replica: int
    dependency: str
    dir: Path
    epochs: int


def plan(study, names, results_dir=None):
    """{label: Job} for every run of `names` in `study` (Study.runs: each seed of a seeded experiment), in the order
    of `names`, seeds in turn. A label is the experiment's name for its first seed, NAME-seedS for seed S of the
    others. A job's dependency is the job whose run its init_from names; a source outside the plan is trained by
    the job's own process first."""
    jobs, labels, sources = {}, {}, {}
    for name in names:
        for replica in range(study.replicas(name)):
            cfg = study.config(name, replica)
            label = name if replica == 0 else f"{name}-seed{cfg['seed']}"
            jobs[label] = Job(name, replica, None, study.run_dir(name, replica, results_dir), cfg["epochs"])
            labels[jobs[label].dir] = label
            sources[label] = _init_source(cfg["init_from"], name)
    for label, source in sources.items():
        if source:
            source_dir = run_dir(source[0], study.profile, source[1], results_dir, study.dry_run)
            jobs[label] = jobs[label]._replace(dependency=labels.get(source_dir))
    return jobs


def gpu_list(text, visible):
    """'0,1,3' -> ['0', '1', '3'] checked against `visible` CUDA GPUs; 'cpu' entries run on the CPU (a try-out)."""
    gpus = [item.strip() for item in text.split(",") if item.strip()]
    bad = [g for g in gpus if g != "cpu" and not (g.isdigit() and int(g) < visible)]
    if not gpus or bad:
        raise DeviceError(f"--gpus takes GPU indices below {visible} (the visible GPUs) or 'cpu', comma-separated, "
                          f"e.g. 0,1,2,3; got {text!r}")
    return gpus


def schedule(jobs, devices, start, poll=None, interval=2.0, stopping=lambda: False):
    """Run `jobs` ({name: dependency or None}, in order) on `devices` (a list; one job per entry at a time).

    start(name, device) -> a process handle with .poll() (None while running, else its exit status); a job starts
    on the first free device once its dependency has exited with 0, and never when the dependency failed or was
    not started. poll(slots) is called after every round with slots {index: (name, device) or None}. Once
    stopping() is true no job starts any more: the pending ones end as not started once the running ones exit.
    Returns {name: exit status, or None when it was not started}, in the order the jobs ended.
    """
    pending, running, ended = list(jobs), {}, {}
    while pending or running:
        for slot, (name, handle) in list(running.items()):
            status = handle.poll()
            if status is not None:
                ended[name] = status
                del running[slot]
        for name in list(pending):
            dep = jobs[name]
            if stopping() or dep is not None and dep in ended and ended[dep] != 0:
                ended[name] = None
                pending.remove(name)
            elif dep is None or ended.get(dep) == 0:
                free = [slot for slot in range(len(devices)) if slot not in running]
                if free:
                    running[free[0]] = (name, start(name, devices[free[0]]))
                    pending.remove(name)
        if poll is not None:
            poll({slot: (running[slot][0], devices[slot]) if slot in running else None for slot in range(len(devices))})
        if pending or running:
            time.sleep(interval)
    return ended


class GpuLines:
    """One terminal line per device: the run on it and its finished epochs (from its history.csv)."""

    def __init__(self, devices, jobs):
        self.jobs = jobs
        self.bars = [tqdm(total=1, position=i, desc=f"gpu {device}: idle", unit="epoch", leave=True,
                          dynamic_ncols=True) for i, device in enumerate(devices)]
        self.labels = [None] * len(devices)

    def __call__(self, slots):
        for slot, running in slots.items():
            bar = self.bars[slot]
            if running is None:
                continue
            label, device = running
            if self.labels[slot] != label:
                self.labels[slot] = label
                bar.reset(total=self.jobs[label].epochs)
                bar.set_description_str(f"gpu {device}: {label}")
            rows = _history(self.jobs[label].dir)
            bar.n = len(rows)
            if rows:
                bar.set_postfix_str(f"val top-1 {float(rows[-1]['val_acc1']):.1f}%")
            bar.refresh()

    def close(self):
        for bar in self.bars:
            bar.close()


def launcher(jobs, profile, data_dir=None, results_dir=None):
    """(start(label, device) for `schedule`, the folder of the logs): start runs `python -m lib train NAME --profile
    PROFILE --replica I` for job `label` of `jobs` on that GPU (its index among this process's visible GPUs) or the
    CPU, its output in results/train-all/PROFILE/LABEL.log, and returns the Popen."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    log_dir = Path(results_dir or RESULTS_DIR) / "train-all" / profile
    log_dir.mkdir(parents=True, exist_ok=True)

    def start(label, device):
        env = dict(os.environ)
        if device != "cpu":
            env["CUDA_VISIBLE_DEVICES"] = visible.split(",")[int(device)] if visible else device
        job = jobs[label]
        command = [sys.executable, "-m", "lib", "train", job.name, "--profile", profile, "--replica", str(job.replica),
                   "--device", "cpu" if device == "cpu" else "cuda"]
        command += ["--data-dir", str(data_dir)] if data_dir else []
        command += ["--results-dir", str(results_dir)] if results_dir else []
        with open(log_dir / f"{label}.log", "w") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return start, log_dir


def train_all(profile, devices, names=None, data_dir=None, results_dir=None, seeds=None, interval=2.0):
    """Train every run of `names` (default: every experiment) that a report of `profile` with `seeds` training
    seeds (None: the profile's) asks for, one per entry of `devices` at a time, keeping the init_from order.
    Returns ({label: exit status or None}, the folder of the logs). Unknown names or seeds raise ConfigError
    before anything is written."""
    jobs = plan(Study(profile, data_dir or "", seeds=seeds), list(names or EXPERIMENTS), results_dir)
    launch, log_dir = launcher(jobs, profile, data_dir, results_dir)
    children = []

    def start(label, device):
        children.append(launch(label, device))
        return children[-1]

    def forward(signum):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)
    lines = GpuLines(devices, jobs)
    try:
        with stop_requests(forward):
            ended = schedule({label: job.dependency for label, job in jobs.items()}, devices, start, lines, interval,
                             requested)
            signum = requested()
    except StoppedAtOnce as error:
        forward(error.signum)
        raise
    finally:
        lines.close()
    if signum:
        raise stopped(signum, ended, log_dir, lambda label: (jobs[label].dir / "metrics.json").exists())
    return ended, log_dir


def stopped(signum, ended, log_dir, finished):
    """The Interrupted of train-all stopped by `signum`, its runs ended as `ended` ({label: exit status or None});
    finished(label): whether its run has finished (a process may finish as the signal comes)."""
    def named(test):
        return [label for label, status in ended.items() if test(label, status)]
    groups = {"finished": named(lambda label, status: status is not None and finished(label)),
              "stopped, their checkpoints kept": named(lambda label, status: status in STOPPED and not finished(label)),
              "failed": named(lambda label, status: status not in (None, *STOPPED) and not finished(label)),
              "not started": named(lambda label, status: status is None)}
    said = "; ".join(f"{what}: {', '.join(labels)}" for what, labels in groups.items() if labels)
    return Interrupted(signum, f"{signal_name(signum)} stopped train-all ({said}; logs in {log_dir}): run the same "
                               "command again to continue")
