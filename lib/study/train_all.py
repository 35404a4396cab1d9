"""Training the study's experiments at once, one per GPU: `python -m lib train-all --profile full --gpus 0,1,2,3`.

Each experiment runs as its own `python -m lib train` process on one GPU (CUDA_VISIBLE_DEVICES), writing the run
directory `make report` re-uses, its output in a log file. An experiment that starts from another one's weights
(init_from) waits until that run has finished, and is not started when it failed. A terminal line per GPU shows
the experiment on it and its epochs so far. Each process runs in a session of its own: Ctrl-C (SIGINT) or SIGTERM
reaches this one, which passes it on to the running ones (each saves the step it reached, lib.core.interrupt),
starts no more and ends with Interrupted once they have stopped; the same signal again stops them at once.
"""
import os
from pathlib import Path
import subprocess
import sys
import time

from tqdm.auto import tqdm

from lib.core.devices import DeviceError
from lib.core.interrupt import Interrupted, StoppedAtOnce, requested, signal_name, stop_requests
from lib.core.progress import _history
from lib.study.registry import EXPERIMENTS, RESULTS_DIR
from lib.study.resolve import _init_source, config, run_dir


STOPPED = (130, 143, -2, -15)  # exit statuses of a `python -m lib train` stopped by SIGINT or SIGTERM


def dependencies(names, profile, data_dir=None):
    """{name: the experiment among `names` whose finished run it starts from (init_from), or None}. A source with
    settings of its own is another run, which the experiment's process trains itself first."""
    deps = {}
    for name in names:
        source = _init_source(config(name, profile, data_dir)["init_from"], name)
        deps[name] = source[0] if source and not source[1] and source[0] in names else None
    return deps


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
    """One terminal line per device: the experiment on it and its finished epochs (from its history.csv)."""

    def __init__(self, devices, profile, results_dir=None, data_dir=None):
        self.profile, self.results_dir, self.data_dir = profile, results_dir, data_dir
        self.bars = [tqdm(total=1, position=i, desc=f"gpu {device}: idle", unit="epoch", leave=True,
                          dynamic_ncols=True) for i, device in enumerate(devices)]
        self.names = [None] * len(devices)

    def __call__(self, slots):
        for slot, job in slots.items():
            bar = self.bars[slot]
            if job is None:
                continue
            name, device = job
            if self.names[slot] != name:
                self.names[slot] = name
                bar.reset(total=config(name, self.profile, self.data_dir)["epochs"])
                bar.set_description_str(f"gpu {device}: {name}")
            rows = _history(run_dir(name, self.profile, results_dir=self.results_dir))
            bar.n = len(rows)
            if rows:
                bar.set_postfix_str(f"val top-1 {float(rows[-1]['val_acc1']):.1f}%")
            bar.refresh()

    def close(self):
        for bar in self.bars:
            bar.close()


def launcher(profile, data_dir=None, results_dir=None, log_dir=None):
    """start(name, device) for `schedule`: `python -m lib train NAME --profile PROFILE` on that GPU (its index among
    this process's visible GPUs) or the CPU, its output in LOG_DIR/NAME.log. Returns the Popen."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    log_dir = Path(log_dir or Path(results_dir or RESULTS_DIR) / "train-all" / profile)
    log_dir.mkdir(parents=True, exist_ok=True)

    def start(name, device):
        env = dict(os.environ)
        if device != "cpu":
            env["CUDA_VISIBLE_DEVICES"] = visible.split(",")[int(device)] if visible else device
        command = [sys.executable, "-m", "lib", "train", name, "--profile", profile,
                   "--device", "cpu" if device == "cpu" else "cuda"]
        command += ["--data-dir", str(data_dir)] if data_dir else []
        command += ["--results-dir", str(results_dir)] if results_dir else []
        with open(log_dir / f"{name}.log", "w") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return start, log_dir


def train_all(profile, devices, names=None, data_dir=None, results_dir=None, interval=2.0):
    """Train `names` (default: every experiment) under `profile`, one per entry of `devices` at a time, keeping the
    init_from order. Returns ({name: exit status or None}, the folder of the logs)."""
    names = list(names or EXPERIMENTS)
    launch, log_dir = launcher(profile, data_dir, results_dir)
    children = []

    def start(name, device):
        children.append(launch(name, device))
        return children[-1]

    def forward(signum):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)
    lines = GpuLines(devices, profile, results_dir, data_dir)
    try:
        with stop_requests(forward):
            ended = schedule(dependencies(names, profile, data_dir), devices, start, lines, interval, requested)
            signum = requested()
    except StoppedAtOnce as error:
        forward(error.signum)
        raise
    finally:
        lines.close()
    if signum:
        raise stopped(signum, ended, log_dir,
                      lambda name: (run_dir(name, profile, results_dir=results_dir) / "metrics.json").exists())
    return ended, log_dir


def stopped(signum, ended, log_dir, finished):
    """The Interrupted of train-all stopped by `signum`, its experiments ended as `ended` ({name: exit status or
    None}); finished(name): whether its run has finished (a process may finish as the signal comes)."""
    def named(test):
        return [name for name, status in ended.items() if test(name, status)]
    groups = {"finished": named(lambda name, status: status is not None and finished(name)),
              "stopped, their checkpoints kept": named(lambda name, status: status in STOPPED and not finished(name)),
              "failed": named(lambda name, status: status not in (None, *STOPPED) and not finished(name)),
              "not started": named(lambda name, status: status is None)}
    said = "; ".join(f"{what}: {', '.join(names)}" for what, names in groups.items() if names)
    return Interrupted(signum, f"{signal_name(signum)} stopped train-all ({said}; logs in {log_dir}): run the same "
                               "command again to continue")
