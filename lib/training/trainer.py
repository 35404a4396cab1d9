"""One training loop for every experiment: fit / evaluate, schedule, meters, loaders, history.

A run lives in one directory::

    config.json      the resolved configuration (plain data)
    history.csv      one row per epoch: lr, train/val loss and Acc@1/Acc@5, time, images/s
    steps.csv        one row every `log_every` optimizer steps: lr and training loss
    metrics.json     final and best metrics plus provenance (written last: its presence means "finished")
    checkpoint.pth   model, optimizer, scheduler, every process's RNG state after the last finished epoch, or
                     after the step a signal stopped the run at (lib.training.mid_epoch; git-ignored)
    model_best.pth   model weights with the best val Acc@1 (git-ignored)
    tb/              TensorBoard event files

Launched by ``torchrun --nproc-per-node N -m lib train ...`` the same loop runs under
DistributedDataParallel: each process on the GPU of its local rank (or the CPU, on gloo), seeded with
seed + rank, stopping together with the others on a non-finite loss; only rank 0 writes files.
"""
import itertools
import math
from pathlib import Path
import time
import warnings

import torch
from torch import nn
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from lib.core import devices
from lib.core.devices import AMP_CHOICES
from lib.core.errors import CheckpointError, TrainingError, first_line
from lib.core.interrupt import requested, stop_requests
from lib.training import compilation, mid_epoch, run_files
from lib.training.amp import choose_amp, probe_batch
from lib.training.loaders import DeviceBatches, build_loaders
from lib.training.metrics import evaluate
from lib.training.placement import place_model


HISTORY_FIELDS = ["epoch", "lr", "train_loss", "train_acc1", "train_acc5", "val_loss", "val_acc1",
                  "val_acc5", "epoch_time_s", "images_per_s"]


class Trainer:
    """Trains `model` for cfg['epochs'] epochs, writing the run directory described in the module docstring.

    cfg keys used: epochs, batch_size, optimizer, lr, momentum, weight_decay, warmup_epochs, grad_clip,
    label_smoothing, seed, amp ('auto' | 'bf16' | 'off'), channels_last, log_every, num_workers, val_batch_size,
    and optionally train_batches / val_batches (at most that many optimizer steps per epoch / batches per
    evaluation; None or absent: no cap), data_on_device ('auto' | 'on' | 'off': where training batches come from,
    lib.training.loaders; recorded in metrics.json as provenance.train_data) and compile (True: torch.compile the
    model, lib.training.placement, which also brings SyncBatchNorm under torchrun on GPUs; 'auto': where the run pays
    it back, settled once per fit() by lib.training.compilation and recorded in metrics.json as provenance.compile).
    amp='auto' resolves once per run (kept in the checkpoint, recorded in metrics.json) by `lib.training.amp`:
    bf16 autocast where it pays, otherwise off (fp32). bf16 autocast keeps the weights, gradients and optimizer
    state in fp32. amp 'off' is IEEE fp32, with the GPU's TF32 shortcut off (`lib.core.devices.precision_context`),
    so that 'fp32' means the same arithmetic on every device.
    `input_hook(model, images, labels, progress) -> (images, logs)` may replace each training batch (adversarial
    training; progress: epochs done before the batch, a float);
    it runs inside the trainer's autocast, i.e. in the training precision.
    `notes` (plain data, e.g. where pretrained weights came from) are copied into metrics.json.
    Under DDP each process seeds with cfg['seed'] + rank, so that ranks draw different augmentations.
    """

    def __init__(self, model, train_set, val_set, train_transform, val_transform, cfg, run_dir,
                 device="auto", input_hook=None, progress=True, notes=None):
        self.cfg, self.run_dir, self.input_hook, self.progress = cfg, Path(run_dir), input_hook, progress
        self.notes = notes or {}
        self.rank, self.world_size = devices.world()
        self.device = devices.resolve_device(device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if cfg["amp"] not in AMP_CHOICES:
            raise ValueError(f"amp must be 'auto', 'bf16' or 'off', not {cfg['amp']!r}")
        self.amp = None if cfg["amp"] == "auto" else cfg["amp"]  # resolved by the first fit() or resume()
        self.amp_speedup, self.compile_choice = None, None
        devices.seed_everything(cfg["seed"] + self.rank)
        self.train_loader, self.val_loader = build_loaders(train_set, val_set, cfg, cfg["seed"], self.device)
        self.train_transform, self.val_transform = train_transform.to(self.device), val_transform.to(self.device)
        self.memory_format = torch.channels_last if cfg["channels_last"] else torch.contiguous_format
        self.model, self.net = place_model(model, cfg, self.device, self.memory_format, self.world_size)
        self.optimizer = build_optimizer(self.model, cfg)
        self.steps_per_epoch = min(len(self.train_loader), cfg.get("train_batches") or len(self.train_loader))
        total, warmup = cfg["epochs"] * self.steps_per_epoch, round(cfg["warmup_epochs"] * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: warmup_cosine(step, total, warmup))
        self.history, self.steps, self.epoch, self.best_acc1, self.train_time = [], [], 0, -1.0, 0.0
        self.resume_at = None  # a mid-epoch checkpoint's position (lib.training.mid_epoch), until its epoch resumes
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)

    @property
    def is_main_process(self):
        """Whether this process is rank 0, the only one that writes files and shows progress."""
        return self.rank == 0

    def fit(self, stop_after=None):
        """Train the remaining epochs (all of them, or up to epoch `stop_after`); returns metrics.

        Writes checkpoint.pth every epoch and model_best.pth on a new best val Acc@1; metrics.json
        only once the last epoch is done. SIGINT or SIGTERM stops it at the next optimizer step (under DDP: the
        next log point) with a checkpoint of that step, or after the epoch it came in, and raises Interrupted.
        """
        self.resolve_amp()
        self.resolve_compile()
        writer = run_files.tensorboard_writer(self.run_dir) if self.is_main_process else None
        last = self.cfg["epochs"] if stop_after is None else min(stop_after, self.cfg["epochs"])
        try:
            with stop_requests():
                while self.epoch < last:
                    self._fit_epoch(writer)
                    mid_epoch.stop_after_epoch(self, self._check_flags())
        finally:
            if writer:
                writer.close()
        return self.finish() if self.epoch == self.cfg["epochs"] else None

    def resolve_amp(self):
        """Settle amp='auto' to 'bf16' or 'off' once, on one measured batch (lib.training.amp.choose_amp)."""
        if self.amp is None:
            self.amp, self.amp_speedup = choose_amp(self.model, self.train_loader, self.val_transform, self.device,
                                                    self.memory_format, self.rank, self.world_size)

    def resolve_compile(self):
        """Settle compile='auto' once per fit() (lib.training.compilation.settle): `net` compiled where it pays; the
        remaining work counts every pass through `net` (passes_per_step)."""
        if self.cfg.get("compile") == "auto" and self.compile_choice is None:
            batch = probe_batch(self.train_loader, self.val_transform, self.device, self.memory_format)
            remaining = (self.cfg["epochs"] - self.epoch) * self.steps_per_epoch * passes_per_step(self.cfg)
            self.net, self.compile_choice = compilation.settle(self.model, self.net, batch, self.precision, remaining,
                                                               self.rank, self.world_size)

    def _fit_epoch(self, writer):
        """Train and validate one epoch (the rest of it, after a mid-epoch checkpoint), then write its files."""
        at = self.resume_at = self.resume_at or mid_epoch.epoch_start(self.optimizer.param_groups[0]["lr"])
        start = time.perf_counter()
        row = {"epoch": self.epoch + 1, "lr": at["lr"], **self.train_epoch()}
        seconds = at["seconds"] + time.perf_counter() - start
        self.train_time += seconds
        row.update(self.validate())
        row.update(epoch_time_s=seconds, images_per_s=self.steps_per_epoch * self.cfg["batch_size"] / seconds)
        self.history.append(row)
        self.epoch += 1
        new_best = self._track_best(row["val_acc1"])
        rng = devices.gather_rng_states(self.device, self.rank, self.world_size)
        if self.is_main_process:
            self._write_epoch(new_best, rng)
            run_files.log_epoch(writer, row, self.steps, self.epoch)

    def train_epoch(self):
        """One pass over the training loader (at most steps_per_epoch steps; after a mid-epoch checkpoint, the
        steps it had not reached); returns the epoch's train metrics.

        No step waits for the device: the loss is read, and checked for inf/NaN (`_check_flags`), only
        every log_every steps and at the end of the epoch.
        """
        self.net.train()
        at = self.resume_at = self.resume_at or mid_epoch.epoch_start(self.optimizer.param_groups[0]["lr"])
        cfg, began = self.cfg, time.perf_counter()
        self.train_loader.sampler.set_epoch(self.epoch, at["position"] * self.train_loader.batch_size)
        meter = mid_epoch.epoch_meter(at, self.device, self.is_main_process)
        batches = iter(self.train_loader)
        if at.get("rng") is not None:  # after iter(): a DataLoader without workers draws a seed from the global RNG
            devices.set_rng_state(at["rng"], self.device)
        batches = itertools.islice(batches, self.steps_per_epoch - at["position"])
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}/{cfg['epochs']}", leave=False, total=self.steps_per_epoch,
                   initial=at["position"], disable=not (self.progress and self.is_main_process))
        for position, (images, labels) in enumerate(bar, at["position"] + 1):
            images = self.train_transform(images.to(self.device, non_blocking=True))
            images = images.contiguous(memory_format=self.memory_format)
            labels = labels.to(self.device, non_blocking=True)
            if self.input_hook is not None:
                with self.autocast():
                    images, logs = self.input_hook(self.net, images, labels,
                                                    self.scheduler.last_epoch / self.steps_per_epoch)
                meter.add(logs)
            loss = self.step(images, labels, meter)
            step, signum = self.scheduler.last_epoch, requested() if self.world_size == 1 else 0
            if step % cfg["log_every"] == 0:
                signum = self._check_flags()
                lr, loss = self.optimizer.param_groups[0]["lr"], loss.item()
                self.steps.append({"step": step, "epoch": self.epoch + 1, "lr": lr, "loss": loss})
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.3g}")
            if signum:
                mid_epoch.stop_mid_epoch(self, signum, position, meter, began)
        self._check_flags()
        self.resume_at = None
        return meter.result("train")

    def step(self, images, labels, meter):
        """Forward, backward, clip, optimizer and schedule step for one batch; returns the loss (0-d tensor).

        A non-finite loss only sets the device flag `nonfinite` here (no host sync); `_check_flags` reads it.
        """
        with self.autocast():
            logits = self.net(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.cfg["label_smoothing"])
        self.nonfinite |= ~torch.isfinite(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg["grad_clip"]:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg["grad_clip"])
        self.optimizer.step()
        self.scheduler.step()
        meter.update(loss, logits, labels)
        return loss

    def _check_flags(self):
        """Raise TrainingError on every process when any process met a non-finite loss since the start; else the
        signal (its number, 0 for none) that any process was asked to stop by (lib.core.interrupt).

        Runs at the same optimizer steps on every process (log points, end of epoch), so all of them stop
        together: one host sync and, under DDP, one all-reduce of two flags per process.
        """
        flags = torch.zeros(2, self.world_size, device=self.device)
        flags[0, self.rank], flags[1, self.rank] = self.nonfinite, requested()
        if self.world_size > 1:
            dist.all_reduce(flags)
        ranks = flags[0].nonzero().flatten().tolist()
        if ranks:
            where = f" on rank(s) {', '.join(map(str, ranks))}" if self.world_size > 1 else ""
            raise TrainingError(
                f"the training loss became nan or inf{where} in epoch {self.epoch + 1} (by step "
                f"{self.scheduler.last_epoch}); every process stopped and the last good checkpoint is kept in "
                f"{self.run_dir}. Lower the learning rate (--lr) or set --grad-clip.")
        return int(flags[1].max())

    def validate(self):
        """Loss, Acc@1 and Acc@5 on the validation loader (at most cfg['val_batches'] batches), keyed val_*."""
        return evaluate(self.model, self.val_loader, self.val_transform, self.device, self.precision,
                        max_batches=self.cfg.get("val_batches"))

    @property
    def precision(self):
        """The training precision, as lib.core.devices.PRECISIONS names it: 'bf16' (autocast) or 'fp32'."""
        return "bf16" if self.amp == "bf16" else "fp32"

    def autocast(self):
        """The training precision's context on the training device (lib.core.devices.precision_context)."""
        return devices.precision_context(self.precision, self.device)

    # -- after each epoch
    def _track_best(self, val_acc1):
        """Keep the best val Acc@1 so far; returns whether `val_acc1` (%) is a new best."""
        new_best = val_acc1 > self.best_acc1
        self.best_acc1 = max(self.best_acc1, val_acc1)
        return new_best

    def _write_epoch(self, new_best, rng):
        """checkpoint.pth (with every process's random state `rng`), history.csv and steps.csv, and
        model_best.pth when the epoch just ended set a new best."""
        row = self.history[-1]
        fields = HISTORY_FIELDS + sorted(set(row) - set(HISTORY_FIELDS))
        run_files.save_checkpoint(self.run_dir / "checkpoint.pth", self.state(rng))  # first: it holds the others
        run_files.write_csv(self.run_dir / "history.csv", self.history, fields, "the history")
        run_files.write_csv(self.run_dir / "steps.csv", self.steps, mid_epoch.STEP_FIELDS, "the step log")
        if new_best:
            run_files.save_checkpoint(self.run_dir / "model_best.pth",
                                     {"model": self.model.state_dict(), "epoch": self.epoch}, "the best weights")

    def finish(self):
        """metrics.json: the last epoch's metrics, the best val Acc@1, and provenance (amp: the resolved choice)."""
        last = self.history[-1]
        images = sum(r["images_per_s"] * r["epoch_time_s"] for r in self.history)
        provenance = run_files.provenance(self.cfg, self.device, self.world_size, self.amp, self.amp_speedup,
                                          self.train_time, images / self.train_time)
        provenance["train_data"] = "device" if isinstance(self.train_loader, DeviceBatches) else "loader"
        provenance["compile"] = self.compile_choice
        metrics = {**{k: v for k, v in last.items() if k != "epoch"}, "epochs": self.epoch,
                   "best_val_acc1": self.best_acc1, **self.notes, "provenance": provenance}
        if self.is_main_process:
            run_files.write_json(self.run_dir / "metrics.json", metrics, "the final metrics")
        return metrics

    # -- checkpoint and resume
    def state(self, rng, partial=None):
        """The checkpoint: `rng` holds every process's `rng_state`, indexed by rank; `partial`, in a mid-epoch
        checkpoint, the position reached in the epoch (lib.training.mid_epoch)."""
        return {"partial": partial, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "best_acc1": self.best_acc1,
                "history": self.history, "steps": self.steps, "train_time": self.train_time,
                "amp": self.amp, "amp_bf16_speedup": self.amp_speedup, "rng": rng}

    def resume(self, path):
        """Continue from a checkpoint written after an epoch or mid-epoch, with the model, optimizer, schedule,
        history and every process's random state, so the rest of the run sees the same batches, augmentations and
        learning rates as an uninterrupted one. On a CPU the final result is then the same; on a GPU it agrees only
        as closely as two uninterrupted runs do (cuDNN benchmarks its algorithms per process, and some of its
        backward kernels add in a varying order), not bit for bit.

        Each process restores its own random state. A checkpoint written by a different number of
        processes cannot continue their streams: each process then re-seeds (seed + rank + 1000 x epoch)
        and a warning says so. CheckpointError when the file cannot be read or does not fit this run (another
        model, optimizer or schedule); the trainer may then hold part of it and must not be used.
        """
        state = run_files.load_checkpoint(path)
        try:
            self._restore(state, path)
        except torch.OutOfMemoryError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"{path} does not fit this run ({type(error).__name__}: "
                                  f"{first_line(error)})") from error

    def _restore(self, state, path):
        """Take the model, optimizer, schedule, history and random state of checkpoint `state` (read from `path`)."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.best_acc1, self.history = state["epoch"], state["best_acc1"], state["history"]
        self.steps, self.train_time = state["steps"], state["train_time"]
        # checkpoints written before amp and per-process RNG states were saved lack these keys
        self.amp, self.amp_speedup = state.get("amp", self.amp), state.get("amp_bf16_speedup")
        rng = state.get("rng", [])
        self.resume_at = mid_epoch.resume_position(state, rng, self.rank, self.world_size, path)
        if len(rng) == self.world_size:
            devices.set_rng_state(rng[self.rank], self.device)
        else:
            warnings.warn(f"{path} holds the random state of {len(rng)} process(es), this run has {self.world_size}: "
                          "the random streams restart from new seeds, so the result differs from an uninterrupted run")
            devices.seed_everything(self.cfg["seed"] + self.rank + 1000 * self.epoch)


def passes_per_step(cfg):
    """Forward and backward passes through the model per optimizer step of a run of `cfg`: 1, plus the PGD steps
    that craft each batch of an adversarial run (cfg['adversarial'], its num_steps)."""
    return 1 + (cfg["adversarial"]["num_steps"] if cfg.get("adversarial") else 0)


def build_optimizer(model, cfg):
    """SGD with momentum or AdamW from cfg['optimizer'], lr and weight decay from cfg."""
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                               weight_decay=cfg["weight_decay"])
    if cfg["optimizer"] == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    raise ValueError(f"unknown optimizer {cfg['optimizer']!r}; use 'sgd' or 'adamw'")


def warmup_cosine(step, total_steps, warmup_steps):
    """Learning-rate factor at optimizer step `step`: linear 0 -> 1 over warmup, then cosine 1 -> 0."""
    if step < warmup_steps:
        return step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
