"""Input-pipeline cost: the trainer's images/s on the sample against the model's pure compute rate.

Both sides run in this process, alternating, on the same model and batch size:
- trainer: `Trainer.train_epoch` over the decoded sample, memory-mapped from its cache (loader, batch
  augmentation, step);
- compute: the same number of optimizer steps on one in-memory float batch (no loading, no augmentation).
Pipeline share = 1 - trainer rate / compute rate. Prints a table; writes benchmarks/pipeline.json.

    python -m benchmarks.pipeline [--size 64] [--batch 64] [--repeats 3] [--experiment simplenet]
"""
import argparse
import json
from pathlib import Path
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from lib import experiments
from lib.training.trainer import Trainer


def compute_only(trainer, steps):
    """Seconds for `steps` training steps on one fixed in-memory batch (same model, optimizer, loss)."""
    images, labels = next(iter(trainer.train_loader))
    images = trainer.train_transform(images.to(trainer.device))
    labels = labels.to(trainer.device)
    trainer.model.train()
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(trainer.model(images), labels)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="simplenet")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = experiments.config(args.experiment, "sample", image_size=args.size, batch_size=args.batch, epochs=100)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(experiments.build_model(cfg), *experiments.datasets(cfg), cfg, tmp, device="cpu",
                          progress=False)
        steps = len(trainer.train_loader)
        images = steps * args.batch
        compute_only(trainer, 3)  # warm-up
        rows = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            trainer.train_epoch()
            trained = time.perf_counter() - start
            rows.append((images / trained, images / compute_only(trainer, steps)))
    trainer_rate = statistics.median(r[0] for r in rows)
    compute_rate = statistics.median(r[1] for r in rows)
    share = 1 - trainer_rate / compute_rate
    result = {"experiment": args.experiment, "image_size": args.size, "batch": args.batch, "steps": steps,
              "threads": torch.get_num_threads(), "trainer_images_per_s": trainer_rate,
              "compute_images_per_s": compute_rate, "pipeline_share": share, "runs": rows}
    print(f"{args.experiment}, {args.size} px, batch {args.batch}, {steps} steps/epoch, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    print(f"| {'measure':<32} | {'images/s':>9} |")
    print(f"|{'-' * 34}|{'-' * 11}|")
    print(f"| {'trainer (load + augment + step)':<32} | {trainer_rate:>9.1f} |")
    print(f"| {'compute only (in-memory batch)':<32} | {compute_rate:>9.1f} |")
    print(f"input pipeline share of step time: {share:.1%}")
    Path(__file__).with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
