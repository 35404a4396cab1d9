"""Stopping a training run on SIGINT or SIGTERM (lib.core.interrupt) with a checkpoint of the step it reached, and
resuming from that step to the result of an uninterrupted run.

A mid-epoch checkpoint is the end-of-epoch one (lib.training.trainer: model, optimizer, scheduler, every process's
random state, history, step log) with `partial` set: {'position': optimizer steps of the epoch done, 'lr': the
epoch's first learning rate (its history row), 'seconds': training time of the epoch so far, 'meter': the epoch's
train sums so far (lib.training.metrics.Meter.totals)}. The epoch's data order is drawn again from (seed, epoch)
(lib.training.loaders), so the resumed run takes the batches after `position` in the same order.
"""
import sys
import time

from lib.core import devices
from lib.core.interrupt import Interrupted, signal_name
from lib.core.progress import note
from lib.training import run_files
from lib.training.metrics import Meter


STEP_FIELDS = ["step", "epoch", "lr", "loss"]


def epoch_start(lr):
    """The position at the start of an epoch whose learning rate is `lr` (the `resume_at` of a fresh epoch)."""
    return {"position": 0, "lr": lr, "seconds": 0.0, "meter": None, "rng": None}


def epoch_meter(at, device, mine):
    """The train Meter of an epoch resumed at position `at` (from its totals; `mine`: this process takes them)."""
    meter = Meter(device)
    if at["meter"] is not None:
        meter.load(at["meter"], mine)
    return meter


def stop_mid_epoch(trainer, signum, position, meter, began):
    """Save the checkpoint of optimizer step `position` of the current epoch (steps.csv too) and raise Interrupted.

    Called on every process at the same step (collectives under DDP); `meter`: the epoch's train Meter; `began`:
    time.perf_counter() when this process's part of the epoch began.
    """
    at = trainer.resume_at
    partial = {"position": position, "lr": at["lr"], "seconds": at["seconds"] + time.perf_counter() - began,
               "meter": meter.totals()}
    rng = devices.gather_rng_states(trainer.device, trainer.rank, trainer.world_size)
    if trainer.is_main_process:
        run_files.write_csv(trainer.run_dir / "steps.csv", trainer.steps, STEP_FIELDS, "the step log")
        run_files.save_checkpoint(trainer.run_dir / "checkpoint.pth", trainer.state(rng, partial))
    raise Interrupted(signum, f"{signal_name(signum)} stopped the training run in {trainer.run_dir} at step "
                              f"{position} of {trainer.steps_per_epoch} of epoch {trainer.epoch + 1} of "
                              f"{trainer.cfg['epochs']}; a checkpoint of that step is kept: run the same command "
                              "again to continue from it")


def stop_after_epoch(trainer, signum):
    """Raise Interrupted when `signum` (0: none) came while the epoch just written was validated or saved."""
    if signum:
        raise Interrupted(signum, f"{signal_name(signum)} stopped the training run in {trainer.run_dir} after epoch "
                                  f"{trainer.epoch} of {trainer.cfg['epochs']}; its checkpoint is kept: run the "
                                  "same command again to continue from it")


def resume_position(state, rng, rank, world_size, path):
    """The `resume_at` of checkpoint `state` (read from `path`) in process `rank` of `world_size`: None after an
    epoch; mid-epoch, its `partial` with this process's random state (None when another number of processes
    wrote it), which the trainer restores once the epoch's batches are drawn. Says so in one line (rank 0; also to a
    report's terminal, lib.core.progress.note)."""
    partial = state.get("partial")
    if partial is None:
        return None
    if rank == 0:
        line = f"resuming {path} at step {partial['position']} of epoch {state['epoch'] + 1}"
        print(line, file=sys.stderr, flush=True)
        note(line)
    return {**partial, "rng": rng[rank] if len(rng) == world_size else None}
