"""Metrics of a classifier: label ranks, top-k hits, running meters (Acc@1/Acc@5), evaluation over a loader."""
import itertools

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from lib.core import devices


def label_rank(logits, labels):
    """Per sample, the number of other classes scoring at least as high as its label (int64 (B,)).

    logits (B, C) of any float dtype, compared in fp32; labels (B,). A sample is top-k correct when its
    rank is below k: a tie (frequent among bf16 logits) counts against the label, the same way on every
    device, and a NaN logit is never a hit.
    """
    logits = logits.float()
    not_below = ~(logits < logits.gather(1, labels[:, None]))  # the label itself, ties and NaNs
    return not_below.sum(dim=1) - 1


def correct_topk(logits, labels, ks=(1, 5)):
    """Number of samples whose label is among the top-k logits (label_rank < k), for each k (0-d tensors)."""
    rank = label_rank(logits, labels)
    return [(rank < k).sum() for k in ks]


class Meter:
    """Sums of loss, Acc@1 and Acc@5 hits and sample counts, reduced across processes on read.

    The sums stay on the device and the sample count (known from shapes) on the host, so `update`
    never waits for the device.
    """

    def __init__(self, device):
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss*n, top1, top5
        self.count = 0
        self.extra = {}

    def update(self, loss, logits, labels):
        """Add a batch: loss the batch mean (0-d), logits (B, C), labels (B,)."""
        c1, c5 = correct_topk(logits.detach(), labels)
        n = labels.shape[0]
        self.sums += torch.stack([loss.detach().double() * n, c1.double(), c5.double()])
        self.count += n

    def add(self, logs):
        """Accumulate extra per-batch counts (e.g. {'clean_correct': n}) from an input hook."""
        for key, value in logs.items():
            self.extra[key] = self.extra.get(key, 0) + torch.as_tensor(value, dtype=torch.float64)

    def totals(self):
        """The sums over all processes (a collective under DDP), as CPU tensors: {'sums': float64 (4,) loss*n, top1,
        top5, images; 'extra': {key: float64 0-d}}, for a mid-epoch checkpoint (`load`)."""
        keys = sorted(self.extra)
        both = torch.cat([self.sums, self.sums.new_tensor([self.count])] +
                         [self.extra[k].to(self.sums.device).reshape(1) for k in keys])
        if devices.world()[1] > 1:
            dist.all_reduce(both)
        both = both.cpu()
        return {"sums": both[:4], "extra": dict(zip(keys, both[4:]))}

    def load(self, totals, mine=True):
        """Continue from `totals` (from `totals`): added to this process's sums when `mine` (one process of a
        group takes them, the others start at zero with the same keys, so that the reduction adds them once)."""
        scale = 1.0 if mine else 0.0
        self.sums = totals["sums"][:3].to(self.sums.device) * scale
        self.count = int(totals["sums"][3]) if mine else 0
        self.extra = {key: value * scale for key, value in totals["extra"].items()}

    def result(self, prefix):
        """{prefix_loss, prefix_acc1, prefix_acc5, ..., prefix_images}: accuracies in percent of the
        prefix_images images counted (over all processes)."""
        sums = torch.cat([self.sums, self.sums.new_tensor([self.count])])
        keys = sorted(self.extra)
        extra = torch.stack([self.extra[k].to(sums.device) for k in keys]) if keys else sums[:0]
        both = torch.cat([sums, extra])
        if devices.world()[1] > 1:
            dist.all_reduce(both)
        loss, c1, c5, images = both[:4].tolist()
        n = max(images, 1)
        out = {f"{prefix}_loss": loss / n, f"{prefix}_acc1": 100 * c1 / n, f"{prefix}_acc5": 100 * c5 / n,
               f"{prefix}_images": int(images)}
        for key, value in zip(keys, both[4:].tolist()):
            out[f"{prefix}_{key.replace('_correct', '_acc1')}"] = 100 * value / n
        return out


def evaluate(model, loader, transform, device, precision="fp32", progress=False, max_batches=None):
    """Val loss and Acc@1/Acc@5 (percent) of `model` on `loader` (uint8 batches -> `transform`).

    precision: 'fp32' or 'bf16' (lib.core.devices.precision_context); max_batches: evaluate at most that many
    batches of `loader` (None: all).
    """
    was_training = model.training
    model.eval()
    meter = Meter(device)
    batches = itertools.islice(loader, max_batches)
    with torch.no_grad():
        for images, labels in tqdm(batches, desc="val", leave=False, disable=not progress,
                                   total=min(len(loader), max_batches or len(loader))):
            images, labels = transform(images.to(device, non_blocking=True)), labels.to(device, non_blocking=True)
            with devices.precision_context(precision, device):
                logits = model(images)
            meter.update(F.cross_entropy(logits.float(), labels), logits, labels)
    model.train(was_training)
    return meter.result("val")
