"""lib/training/mid_epoch.py with lib/core/interrupt.py: SIGINT or SIGTERM stops training at the next step with a
checkpoint of it, and the resumed run ends exactly as an uninterrupted one; a second signal stops at once."""
import gc
import json
import os
import re
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch

from lib.__main__ import main
from lib.core.interrupt import Interrupted, StoppedAtOnce
from lib.data.layout import PROJECT_ROOT
from tests.training.toy_training import trainer

TIMING = ["epoch_time_s", "images_per_s"]


class Signal:
    """An input hook that sends this process `signum` before the given training steps (counted from 1; a step given
    twice: two signals)."""

    def __init__(self, signum, *steps):
        self.signum, self.steps, self.count = signum, steps, 0

    def __call__(self, model, images, labels, progress):
        self.count += 1
        for _ in range(self.steps.count(self.count)):
            os.kill(os.getpid(), self.signum)
        return images, {}


@pytest.mark.parametrize("signum, settings", [(signal.SIGINT, {}), (signal.SIGTERM, {"data_on_device": "on"}),
                                              (signal.SIGINT, {"num_workers": 1})])
def test_a_signal_mid_epoch_saves_that_step_and_the_resumed_run_ends_as_an_uninterrupted_one(
        tmp_path, signum, settings):
    handler = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN in a background job of a script
    whole = trainer(tmp_path / "whole", **settings).fit()
    first = trainer(tmp_path / "split", **settings)
    first.input_hook = Signal(signum, 9)  # step 3 of epoch 2 (6 steps an epoch)
    with pytest.raises(Interrupted, match="at step 3 of 6 of epoch 2 of 3; a checkpoint of that step is kept") as stop:
        first.fit()
    assert stop.value.status == 128 + signum
    saved = torch.load(tmp_path / "split" / "checkpoint.pth", weights_only=True)
    assert saved["epoch"] == 1 and saved["partial"]["position"] == 3 and saved["scheduler"]["last_epoch"] == 9
    assert signal.getsignal(signal.SIGINT) is handler  # the handlers are put back
    second = trainer(tmp_path / "split", **settings)
    second.resume(tmp_path / "split" / "checkpoint.pth")
    resumed = second.fit()
    for key in ("train_loss", "train_acc1", "val_loss", "val_acc1", "val_acc5"):
        assert resumed[key] == whole[key], key
    for name in ("history.csv", "steps.csv"):
        split, plain = (pd.read_csv(tmp_path / run / name) for run in ("split", "whole"))
        pd.testing.assert_frame_equal(split.drop(columns=TIMING, errors="ignore"),
                                      plain.drop(columns=TIMING, errors="ignore"))
    del stop, first, second  # their loaders' worker processes end here, not in a later test
    gc.collect()


def test_the_same_signal_twice_stops_at_once_keeping_the_last_epoch(tmp_path):
    run = trainer(tmp_path)
    run.input_hook = Signal(signal.SIGINT, 8, 8)  # the second comes before the first is acted on
    with pytest.raises(StoppedAtOnce, match="SIGINT stopped it at once"):
        run.fit()
    saved = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    assert saved["epoch"] == 1 and saved["partial"] is None


STEP_PRINTER = """
import sys, time
from lib.__main__ import main
from lib.training.trainer import Trainer
step = Trainer.step
def slow_step(self, *args):
    print("step", self.scheduler.last_epoch, flush=True)
    time.sleep(0.1)
    return step(self, *args)
Trainer.step = slow_step
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_to_a_training_process_mid_epoch_exits_143_with_one_line_and_resumes_there(tmp_path, capsys):
    """`python -m lib train` (each step announced, and slowed) gets SIGTERM mid-epoch; run again (here, in this
    process), it finishes from that step with the metrics of an uninterrupted run."""
    argv = ["train", "simplenet", "--profile", "smoke", "--epochs", "1", "--amp", "off"]  # off: no bf16 measurement
    command = [sys.executable, "-c", STEP_PRINTER, *argv, "--results-dir", str(tmp_path / "split")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    for line in child.stdout:
        if line.strip() == "step 2":  # of 6 steps
            child.send_signal(signal.SIGTERM)
            break
    _, err = child.communicate(timeout=120)
    assert child.returncode == 143 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted: SIGTERM stopped the training run in ")
    step = re.search(r" at step (\d+) of 6 of epoch 1 of 1; a checkpoint of that step is kept", err).group(1)
    capsys.readouterr()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the child's (OMP_NUM_THREADS=1): the same arithmetic
    try:
        assert main([*argv, "--results-dir", str(tmp_path / "split")]) == 0
        assert f"checkpoint.pth at step {step} of epoch 1\n" in capsys.readouterr().err  # resuming from that step
        assert main([*argv, "--results-dir", str(tmp_path / "whole")]) == 0
    finally:
        torch.set_num_threads(threads)
    split, whole = (json.loads(next((tmp_path / name / "runs" / "simplenet").glob("smoke*/metrics.json")).read_text())
                    for name in ("split", "whole"))
    for key in ("train_loss", "train_acc1", "val_loss", "val_acc1", "val_acc5"):
        assert split[key] == whole[key], key
