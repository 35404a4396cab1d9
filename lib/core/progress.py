"""Progress of a report in its terminal: each experiment trained or re-used, epoch by epoch with an ETA.

A notebook kernel's output goes to the notebook, not to the terminal of `python -m lib report`. So runs
announce themselves (`experiments.run` appends a JSON line to the file named by $MINIPLACES_PROGRESS), and a
thread of the report process reads that file and each training run's history.csv (rewritten after every
epoch) and prints one line per event.
"""
import csv
import json
import os
from pathlib import Path
import sys
import threading
import time


# The report sets this to the file in which `experiments.run` announces each run (rank 0 of torchrun only).
PROGRESS_ENV = "MINIPLACES_PROGRESS"


def announce(event, name, path, cfg):
    """Append {event, experiment, dir, epochs, done} to the progress file (`_write`).

    Events: 'cached' (a finished run re-used), 'train' (data and model being prepared), 'fit' (the first
    epoch starts), 'finished'. done: the epochs in the run's history when the event happened, so that a
    monitor polling later still tells a resumed run from a fresh one.
    """
    _write({"event": event, "experiment": name, "dir": str(path), "epochs": cfg["epochs"],
            "done": len(_history(path))})


def note(text):
    """Append {event: 'note', text} to the progress file (`_write`): something slow that is not a training
    run (e.g. decoding a data set once), for the terminal of a report."""
    _write({"event": "note", "text": text})


def _write(line):
    """Append `line` as one JSON line to the file named by $MINIPLACES_PROGRESS, when it is set (rank 0 only)."""
    progress_file = os.environ.get(PROGRESS_ENV)
    if progress_file and int(os.environ.get("RANK", 0)) == 0:
        with open(progress_file, "a") as out:
            out.write(json.dumps(line) + "\n")


def duration(seconds):
    """'42 s', '3 min 05 s' or '1 h 02 min'."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _history(run_dir):
    """The rows of a run's history.csv so far (written atomically, so never half a file)."""
    try:
        with open(Path(run_dir) / "history.csv", newline="") as rows:
            return list(csv.DictReader(rows))
    except FileNotFoundError:
        return []


class Monitor:
    """While active (a `with` block), prints what the runs of notebook kernels started inside it announce.

    events: every announcement read so far ({'event': 'cached' | 'train' | 'fit' | 'finished', 'experiment',
    'dir', 'epochs', 'done'}), for the per-notebook counts of the time table. Within a section (`section`, one
    notebook) a run is announced once: a re-use of a run already trained or re-used in it is neither printed nor
    counted.
    """

    def __init__(self, path, out=sys.stderr, interval=2.0):
        """path: the progress file to create; out: where to print (None: nowhere); interval: seconds."""
        self.path, self.out, self.interval = Path(path), out, interval
        self.events, self.training, self._offset, self._announced = [], {}, 0, set()
        self._stop, self._lock = threading.Event(), threading.Lock()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self.path.touch()
        self._previous = os.environ.get(PROGRESS_ENV)
        os.environ[PROGRESS_ENV] = str(self.path)  # kernels inherit the report process's environment
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        if self._previous is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = self._previous

    def say(self, text):
        if self.out is not None:
            print(text, file=self.out, flush=True)

    def section(self, title):
        """Print `title` and start a section: its runs are announced afresh."""
        self.poll()
        self._announced = set()
        self.say(title)

    def _loop(self):
        while not self._stop.wait(self.interval):
            self.poll()
        self.poll()

    def poll(self):
        """Print the announcements and finished epochs that appeared since the last poll."""
        with self._lock:
            with open(self.path, "rb") as lines:
                lines.seek(self._offset)
                text = lines.read()
            complete = text[:text.rfind(b"\n") + 1]
            self._offset += len(complete)
            for line in complete.decode().splitlines():
                self._event(json.loads(line))
            for run_dir in list(self.training):
                self._epochs(run_dir)

    def _event(self, event):
        if event["event"] == "note":
            self.say(f"  {event['text']}")
            return
        name, run_dir = event["experiment"], event["dir"]
        if event["event"] == "cached" and run_dir in self._announced:
            return
        self._announced.add(run_dir)
        self.events.append(event)
        if event["event"] == "cached":
            self.say(f"  {name}: re-using the finished run in {run_dir}")
        elif event["event"] == "train":
            done = event["done"]
            self.training[run_dir] = dict(name=name, epochs=event["epochs"], first=done, shown=done,
                                          began=time.monotonic(), start=time.monotonic())
            resumed = f", resuming after epoch {done}" if done else ""
            self.say(f"  {name}: training {event['epochs']} epochs in {run_dir}{resumed} (loading data...)")
        elif event["event"] == "fit" and run_dir in self.training:
            self.training[run_dir]["start"] = time.monotonic()  # the ETA counts training time only
        elif event["event"] == "finished" and run_dir in self.training:
            self._epochs(run_dir)
            run = self.training.pop(run_dir)
            self.say(f"  {name}: finished in {duration(time.monotonic() - run['began'])}")

    def _epochs(self, run_dir):
        run, rows = self.training[run_dir], _history(run_dir)
        if len(rows) <= run["shown"]:
            return
        run["shown"] = done = len(rows)
        per_epoch = (time.monotonic() - run["start"]) / (done - run["first"])
        self.say(f"  {run['name']}: epoch {done}/{run['epochs']}  val top-1 {float(rows[-1]['val_acc1']):.2f}%  "
                 f"{per_epoch:.1f} s/epoch  ETA {duration(per_epoch * (run['epochs'] - done))}")


def time_table(times, estimated=None):
    """A plain-text table of per-notebook wall times: times {notebook name: (seconds, trained, re-used)}; with
    `estimated` ({notebook number: seconds}, lib.report.estimate), the estimate beside each ('-': no work
    estimated there) and the total time over the total estimate."""
    width = max([len(name) for name in times] + [8])
    guess = estimated is not None

    def row(name, seconds, expected, trained, cached):
        return f"{name:<{width}}  {seconds:>12}{f'  {expected:>12}' if guess else ''}  {trained:>12}  {cached:>7}"

    def expected(seconds):
        return duration(seconds) if seconds else "-"
    lines = [row("notebook", "time", "estimated", "runs trained", "re-used")]
    lines += [row(name, duration(seconds), guess and expected(estimated.get(name[:2])), trained, cached)
              for name, (seconds, trained, cached) in times.items()]
    total = sum(t[0] for t in times.values())
    lines.append(row("total", duration(total), guess and expected(sum(estimated.values())), "", "").rstrip())
    if guess and sum(estimated.values()):
        lines.append(f"time / estimate: {total / sum(estimated.values()):.2f}")
    return "\n".join(lines)
