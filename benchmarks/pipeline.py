"""Trainer overhead: what a run's training steps cost beyond the model's own step, per model, side by side.

Per experiment (default: SimpleNet and the windowed ViT of the sample profile, each at its run's batch, image
size, memory format, model mode and precision, amp='auto' settled as the trainer settles it), three ways of doing
the same optimizer steps, in one process, interleaved round by round (each round: --steps steps of each in turn):
- trainer: `Trainer.train_epoch` capped at --steps steps (loader over the decoded sample, augmentation, the
  trainer step, log points and the end-of-epoch read of the meters);
- trainer step: `Trainer.step` on one fixed, already augmented batch (forward, loss, backward, gradient clipping
  where the run clips, optimizer, schedule, meters);
- bare step: forward, loss (with the run's label smoothing), backward and the optimizer only, on that batch.
Drop path and the optimizer (AdamW for the ViT) are the model's own step: every side has them. Ratios per round:
trainer / bare step (all the trainer adds) and trainer step / bare step (clipping, schedule, meters); medians and
[min, max] over --rounds rounds. Prints a table; writes benchmarks/pipeline.json.

    python -m benchmarks.pipeline [--experiments simplenet vit] [--rounds 7] [--steps 10]
"""
import argparse
import json
from pathlib import Path
import statistics
import tempfile

import torch
import torch.nn.functional as F

from lib import experiments
from lib.training import mid_epoch
from lib.training.step_costs import timed
from lib.training.trainer import Trainer

SIDES = ("trainer", "trainer step", "bare step")


def sample_trainer(name, steps, folder):
    """A Trainer of experiment `name` on the sample (its sample-profile settings), each epoch capped at `steps`
    optimizer steps, its learning rate schedule long enough never to reach 0 here; amp settled."""
    cfg = experiments.config(name, "sample", train_batches=steps, epochs=1000, log_every=10 ** 9)
    trainer = Trainer(experiments.build_model(cfg), *experiments.datasets(cfg), cfg, folder, device="cpu",
                      input_hook=experiments.input_hook(cfg), progress=False)
    trainer.resolve_amp()
    return trainer


def fixed_batch(trainer):
    """One training batch as a step receives it: augmented, in the run's memory format, on its device."""
    images, labels = next(iter(trainer.train_loader))
    images = trainer.train_transform(images.to(trainer.device)).contiguous(memory_format=trainer.memory_format)
    return images, labels.to(trainer.device)


def bare_step(trainer, images, labels):
    """The model's own training step: forward in the run's precision, loss, backward, optimizer."""
    with trainer.autocast():
        logits = trainer.net(images)
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=trainer.cfg["label_smoothing"])
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    trainer.optimizer.step()


def measure(trainer, steps, rounds):
    """Seconds per optimizer step of each side, per round: {side: [seconds, ...]} (a warm-up round first)."""
    images, labels = fixed_batch(trainer)
    meter = mid_epoch.epoch_meter(mid_epoch.epoch_start(trainer.cfg["lr"]), trainer.device, True)
    sides = {"trainer": trainer.train_epoch,
             "trainer step": lambda: [trainer.step(images, labels, meter) for _ in range(steps)],
             "bare step": lambda: [bare_step(trainer, images, labels) for _ in range(steps)]}
    times = {side: [] for side in SIDES}
    for round_ in range(rounds + 1):
        for side, work in sides.items():
            seconds = timed(work, trainer.device) / steps
            if round_:
                times[side].append(seconds)
    return times


def ratio_text(numerators, denominators):
    """'1.08 [1.02, 1.15]': the median and range of the round-by-round ratios."""
    ratios = [a / b for a, b in zip(numerators, denominators)]
    return f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", nargs="+", default=["simplenet", "vit"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    print(f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__} "
          f"(capability {torch.backends.cpu.get_cpu_capability()}); {args.rounds} rounds of {args.steps} steps")
    print("| experiment | precision | memory format | batch | ms/step: trainer | trainer step | bare step "
          "| trainer / bare [range] | trainer step / bare [range] |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = []
    for name in args.experiments:
        with tempfile.TemporaryDirectory() as folder:
            trainer = sample_trainer(name, args.steps, folder)
            times = measure(trainer, args.steps, args.rounds)
        ms = {side: 1000 * statistics.median(values) for side, values in times.items()}
        fmt = "channels_last" if trainer.memory_format == torch.channels_last else "contiguous"
        print(f"| {name} | {trainer.precision} | {fmt} | {trainer.cfg['batch_size']} | {ms['trainer']:.0f} "
              f"| {ms['trainer step']:.0f} | {ms['bare step']:.0f} | {ratio_text(times['trainer'], times['bare step'])} "
              f"| {ratio_text(times['trainer step'], times['bare step'])} |")
        results.append({"experiment": name, "precision": trainer.precision, "memory_format": fmt,
                        "batch": trainer.cfg["batch_size"], "image_size": trainer.cfg["image_size"],
                        "seconds_per_step": times})
    Path(__file__).with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
