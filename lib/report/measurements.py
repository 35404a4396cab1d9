"""Cost measurements of the report (time and peak memory of a training step, FLOPs, parameters), cached beside
the runs they describe (lib.report.cache), so that a re-render repeats no measurement.

Every measurement builds fresh models from the runs' configurations (the trained weights do not change a
step's cost) and times them side by side with `lib.training.step_costs.compare_training_steps`, taking turns so
that other load on the machine slows each alike, all in one precision: the one the runs trained in (`_precision`),
recorded in each result as 'precision'. Times are seconds per step, memory MiB, FLOPs per image.
"""
import torch
from torch.utils.data import DataLoader

from lib import study
from lib.core import devices
from lib.models import vit
from lib.report.cache import cached
from lib.training import step_costs
from lib.training.trainer import build_optimizer


ROUNDS, REPEATS = 5, 3  # compare_training_steps: rounds taking turns, timed steps per model and round


def _key(device, run, partner):
    """(device, precision, cache settings) of a measurement of `run` against `partner`: the device, the
    precision (`_precision` of `run`), and the identity of the partner (the cache is kept beside `run`; its key
    must change when the partner is retrained or reconfigured too)."""
    dev = devices.resolve_device(device)
    precision = _precision(run, dev)
    return dev, precision, {"device": dev.type, "precision": precision, **_effort(run), "partner": {
        "config": partner.config, "finished_at": partner.metrics["provenance"]["finished_at"]}}


def _precision(run, device):
    """The precision of a measurement on `device`: the one `run` trained in ('bf16' where its amp resolved to
    bf16, else 'fp32'; see lib.core.devices.precision_context), so that a measured step costs what a training step
    cost. fp32 where `device` has no native bf16: an emulated bf16 step would measure the emulation."""
    trained = "bf16" if run.metrics["provenance"].get("amp") == "bf16" else "fp32"
    return "bf16" if trained == "bf16" and devices.has_native_bf16(device) else "fp32"


def _effort(run):
    """compare_training_steps' rounds and repeats: one timed step per model in a capped (dry) run."""
    return dict(rounds=1, repeats=1) if run.config.get("dry_run") else dict(rounds=ROUNDS, repeats=REPEATS)


def _batch(run, batch):
    """The batch size of a measurement: `batch`, at most study.DRY_RUN['measure_batch'] in a dry run."""
    return min(batch, study.DRY_RUN["measure_batch"]) if run.config.get("dry_run") else batch


def _parameters(model):
    return sum(p.numel() for p in model.parameters())


def conv_costs(native_run, custom_run, device="auto", force=False):
    """SimpleNet with nn.Conv2d against the custom convolution: one training step on one augmented batch of
    training images (batch size of the run, at most the training set), ROUNDS rounds of REPEATS timed steps.

    Returns {'native': ..., 'custom': ...} each {'seconds_per_step', 'images_per_s', 'peak_memory_mb',
    'round_seconds'}, plus 'batch', 'image_size', 'device_name', 'precision', 'rounds' and 'repeats'. Cached
    beside the custom run.
    """
    dev, precision, key = _key(device, custom_run, native_run)
    cfg = native_run.config

    def compute():
        train_set, _, augment, _ = study.datasets(cfg)
        batch = _batch(custom_run, min(cfg["batch_size"], len(train_set)))
        images, labels = next(iter(DataLoader(train_set, batch_size=batch)))
        images, labels = augment.to(dev)(images.to(dev)), labels.to(dev)
        models = {}
        for name, run in (("native", native_run), ("custom", custom_run)):
            torch.manual_seed(0)
            models[name] = study.build_model(run.config).to(dev)
        steps = step_costs.compare_training_steps(models, images, labels, precision=precision, **_effort(custom_run))
        return {**steps, "batch": batch, "image_size": cfg["image_size"], "device_name": devices.device_name(dev),
                "precision": precision, **_effort(custom_run)}
    return cached(custom_run, "conv-costs", key, compute, force)


def vit_costs(window_run, global_run, device="auto", force=False):
    """The windowed against the all-global ViT at the trained size: attention and forward FLOPs per image,
    parameters, and a full training step (each with its training optimizer) on a random batch of the training
    batch size. Returns {'window': ..., 'global': ..., 'batch', 'image_size', 'device_name', 'precision', 'rounds',
    'repeats'}. Cached beside the windowed run.
    """
    dev, precision, key = _key(device, window_run, global_run)
    cfg = window_run.config

    def compute():
        size, batch = cfg["image_size"], _batch(window_run, cfg["batch_size"])
        models, images, steps = _side_by_side({"window": window_run, "global": global_run}, batch, size, dev,
                                               precision, _effort(window_run))
        costs = {name: {**steps[name], "attention_flops": vit.attention_flops(m, size),
                        "forward_flops": step_costs.forward_flops(m, images[:1]), "parameters": _parameters(m)}
                 for name, m in models.items()}
        return {**costs, "batch": batch, "image_size": size, "device_name": devices.device_name(dev),
                "precision": precision, **_effort(window_run)}
    return cached(window_run, "vit-costs", key, compute, force)


def vit_scaling(window_run, global_run, scales=(1, 2, 3), batch=16, device="auto", force=False):
    """vit_costs' step measurement as the token grid grows: images of scale x the trained size (same patch),
    a batch of `batch`, one round. Returns {'rows': [{'model', 'tokens', 'seconds_per_step', 'images_per_s',
    'peak_memory_mb', 'attention_flops'}], 'batch', 'device_name', 'precision'}. Cached beside the windowed run.
    """
    dev, precision, key = _key(device, window_run, global_run)
    batch = _batch(window_run, batch)
    key.update(scales=list(scales), batch=batch, rounds=1)

    def compute():
        rows = []
        for scale in scales:
            side = scale * window_run.config["image_size"]
            sized, _, measured = _side_by_side({"window": window_run, "global": global_run}, batch, side, dev,
                                               precision, dict(_effort(window_run), rounds=1), image_size=side)
            grid = vit.token_grid(side, sized["window"].patch_embed.patch_size)
            rows += [{"model": name, "tokens": grid[0] * grid[1], **measured[name],
                      "attention_flops": vit.attention_flops(m, side)} for name, m in sized.items()]
        return {"rows": rows, "batch": batch, "device_name": devices.device_name(dev), "precision": precision}
    return cached(window_run, "vit-scaling", key, compute, force)


def cnn_vs_vit(cnn_run, vit_run, device="auto", force=False):
    """SimpleNet against the windowed ViT: parameters, forward FLOPs per image and a training step measured side
    by side on one random batch of the ViT's training size, each with its own optimizer. Returns {'cnn': ...,
    'vit': ..., 'batch', 'device_name', 'precision', 'rounds', 'repeats'}. Cached beside the ViT run.
    """
    dev, precision, key = _key(device, vit_run, cnn_run)
    cfg = vit_run.config

    def compute():
        batch = _batch(vit_run, cfg["batch_size"])
        nets, images, steps = _side_by_side({"cnn": cnn_run, "vit": vit_run}, batch, cfg["image_size"], dev,
                                            precision, _effort(vit_run))
        costs = {name: {**steps[name], "parameters": _parameters(net),
                        "forward_flops": step_costs.forward_flops(net, images[:1])} for name, net in nets.items()}
        return {**costs, "batch": batch, "device_name": devices.device_name(dev), "precision": precision,
                **_effort(vit_run)}
    return cached(vit_run, "cnn-vs-vit", key, compute, force)


def _side_by_side(runs, batch, size, device, precision, effort, **settings):
    """Fresh models of `runs` ({name: Run}; their configurations updated by `settings`), each with its training
    optimizer, timed side by side (step_costs.compare_training_steps with `effort`: rounds, repeats) on one seeded
    random batch of (batch, 3, size, size) images. Returns ({name: model}, the images, {name: step costs})."""
    images, targets = _random_batch(batch, size, device)
    models = {name: study.build_model({**run.config, **settings}).to(device) for name, run in runs.items()}
    optimizers = {name: build_optimizer(m, runs[name].config) for name, m in models.items()}
    steps = step_costs.compare_training_steps(models, images, targets, optimizers, precision=precision, **effort)
    return models, images, steps


def parameters(run, device="cpu", force=False):
    """Number of parameters of a run's model (from a fresh build; pretrained weights are not fetched)."""
    def compute():
        return {"parameters": _parameters(study.build_model(run.config, pretrained=False))}
    return cached(run, "parameters", {}, compute, force)["parameters"]


def _random_batch(batch, size, device, num_classes=100):
    """Seeded random pixel images (batch, 3, size, size) and labels: step costs do not depend on content."""
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, size, size, generator=generator)
    labels = torch.randint(0, num_classes, (batch,), generator=generator)
    return images.to(device), labels.to(device)
