"""The measurements of the GPU check (benchmarks.gpu_check), each a function of the device and its time share.

Every function returns plain data (rows of dicts) for the check's JSON and Markdown table. The images are
synthetic uint8 tensors of the cached size unless a section says otherwise, so nothing but the embedded sample
is needed; ResNet-18 starts from random weights (no download).
"""
import copy
import platform
import re
import subprocess
import sys
import tempfile
import time

import torch
from torch import nn
from torch.utils.data import TensorDataset
import torchvision

from benchmarks.budget import OutOfTime
from benchmarks.estimate import per_image_flops
from lib import attacks, data, experiments
from lib.attacks.pgd import PGDAttack
from lib.core.devices import PRECISIONS, device_name, precision_context, synchronize
from lib.models.conv import CustomConv2d
from lib.training.loaders import build_loaders
from lib.training.step_costs import timed
from lib.training.trainer import Trainer


def versions(device):
    """Python, torch, torchvision and the device; on a GPU also its driver, CUDA, cuDNN, capability, memory."""
    out = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
           "device": device_name(device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out.update(driver=_driver(), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                   capability=f"{props.major}.{props.minor}", memory_gib=round(props.total_memory / 2**30, 1))
    return out


def _driver():
    """The NVIDIA driver's version from nvidia-smi (torch does not expose it)."""
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10)
        return done.stdout.split()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown (no nvidia-smi)"


def cuda_tests(seconds):
    """`pytest -m cuda tests` in a child process within `seconds`. Every test module is collected (imported), so a
    module that cannot be imported here fails the section; the cuda tests run on a GPU and are skipped elsewhere.
    Returns {'passed': bool, 'summary': pytest's last line, 'counts': {'passed': n, 'skipped': n, 'deselected': n,
    ...} as that line gives them}."""
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-o", "addopts=", "-p", "no:cacheprovider", "tests"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=max(1.0, seconds))
    except subprocess.TimeoutExpired:
        return {"passed": False, "summary": f"stopped after {max(1.0, seconds):.0f} s (its share of the budget)",
                "counts": {}}
    lines = (done.stdout + done.stderr).strip().splitlines() or [""]
    if done.returncode != 0:
        print(done.stdout[-4000:] + done.stderr[-2000:], flush=True)
    counts = {word.rstrip("s") if word == "errors" else word: int(n)
              for n, word in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)", lines[-1])}
    return {"passed": done.returncode == 0, "summary": lines[-1], "counts": counts}


CONV_TOLERANCE = {"fp32": 1e-4, "bf16": 3e-2}  # largest error / largest reference value


def _outputs_and_grads(conv, images, grad):
    """(output, d input, d weight, d bias) of `conv` on `images` for the upstream gradient `grad`."""
    images = images.detach().requires_grad_()
    out = conv(images)
    return (out, *torch.autograd.grad(out, [images, conv.weight, conv.bias], grad.to(out.dtype)))


def conv_agreement(device):
    """The custom convolution and nn.Conv2d against nn.Conv2d in float64, in IEEE fp32 and under bf16 autocast:
    one row per precision and tensor (output and the gradients of input, weight and bias) with each one's
    largest error over the largest reference value, and 'ok' when the custom one is within CONV_TOLERANCE."""
    torch.manual_seed(0)
    native = nn.Conv2d(16, 32, 3, stride=2, padding=1).to(device)
    custom = CustomConv2d(16, 32, 3, stride=2, padding=1).to(device)
    custom.load_state_dict(native.state_dict())
    images, grad = torch.randn(8, 16, 33, 33, device=device), torch.randn(8, 32, 17, 17, device=device)
    expected = _outputs_and_grads(copy.deepcopy(native).double(), images.double(), grad.double())
    rows = []
    for precision in PRECISIONS:
        with precision_context(precision, device):
            mine, theirs = _outputs_and_grads(custom, images, grad), _outputs_and_grads(native, images, grad)
        names = ("output", "grad input", "grad weight", "grad bias")
        for tensor, reference, a, b in zip(names, expected, mine, theirs):
            error = [((t.double() - reference).abs().max() / reference.abs().max()).item() for t in (a, b)]
            rows.append({"precision": precision, "tensor": tensor, "custom error": error[0],
                         "nn.Conv2d error": error[1], "ok": error[0] <= CONV_TOLERANCE[precision]})
    return rows


def synthetic(count, side, device="cpu", seed=0):
    """TensorDataset(random uint8 (count, 3, side, side), random labels (count,)) on `device`."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return TensorDataset(
        torch.randint(0, 256, (count, 3, side, side), dtype=torch.uint8, generator=generator, device=device),
        torch.randint(0, data.NUM_CLASSES, (count,), generator=generator, device=device))


def experiment_row(name, profile, device, steps, compile=False):
    """Experiment `name` at `profile`'s settings on `device` (bf16 autocast on a GPU, as amp='auto' resolves
    there; IEEE fp32 elsewhere): a warm-up epoch, then an epoch of `steps` timed training steps of the trainer
    (augmentation, adversarial crafting, forward, backward, optimizer) on synthetic batches held on the device.
    ms/step, images/s, peak MiB (GPU: the allocator's peak above what the epoch started with; CPU: the process's
    peak resident memory), TFLOP/s (step_costs' count of a training step, PGD crafting included) and the warm-up
    epoch's seconds (torch.compile's start-up, with `compile`)."""
    amp = "bf16" if device.type == "cuda" else "off"
    cfg = experiments.config(name, profile, amp=amp, data_on_device="on", compile=compile)
    batch, size = cfg["batch_size"], cfg["image_size"]
    train_set = synthetic(steps * batch, data.base_size(size), device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(experiments.build_model(cfg, pretrained=False), train_set,
                          synthetic(cfg["val_batch_size"], data.base_size(size)), data.TrainAugment(size),
                          data.EvalTransform(size), cfg, tmp, device=device, input_hook=experiments.input_hook(cfg),
                          progress=False)
        warm_up = timed(trainer.train_epoch, device)  # kernel choice, optimizer state, allocator, compilation
        held = _memory(device)
        seconds = timed(trainer.train_epoch, device)
        peak = _memory(device, peak=True) - held
    flops = per_image_flops(cfg)
    pgd = cfg["adversarial"]["num_steps"] if cfg["adversarial"] else 0
    rate = steps * batch / seconds
    return {"experiment": name + (" (compiled)" if compile else ""), "precision": "bf16" if amp == "bf16" else "fp32",
            "batch": batch, "steps": steps, "warm-up s": warm_up,
            "ms/step": 1e3 * seconds / steps, "images/s": rate, "peak MiB": peak,
            "TFLOP/s": rate * (flops["train_step"] + pgd * flops["attack_step"]) / 1e12}


def _memory(device, peak=False):
    """MiB: the GPU allocator's current (or, with peak, peak since the last call) allocation; on a CPU 0, or with
    peak the process's peak resident memory."""
    if device.type != "cuda":
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if peak else 0.0
    synchronize(device)
    if peak:
        return torch.cuda.max_memory_allocated(device) / 2**20
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device) / 2**20


def _rate(batches, device, seconds, transform=None):
    """images/s of iterating `batches` onto `device` (through `transform` when given) for at most `seconds`,
    counted from the second batch on: the first one, untimed, warms up (worker start-up, the transform's kernels)."""
    iterator, images = iter(batches), 0
    first = next(iterator)[0].to(device, non_blocking=True)
    if transform is not None:
        transform(first)
    synchronize(device)
    start = time.perf_counter()
    for batch, _ in iterator:
        batch = batch.to(device, non_blocking=True)
        if transform is not None:
            batch = transform(batch)
        images += len(batch)
        if time.perf_counter() - start > seconds:
            break
    synchronize(device)
    return images / (time.perf_counter() - start) if images else float(len(first)) / seconds


def pipeline_rows(device, count, size, batch, workers, share):
    """The input pipeline's ceiling in images/s on `count` synthetic uint8 images cached for `size` px: the DataLoader
    path (`workers` processes, pinned batches copied to the device) and the device-resident path (the split copied
    to the device once, batches gathered there), each delivering uint8 batches of `batch` on the device; then the
    training augmentation on those batches (the same on both paths). Each iterates at most a quarter of what is
    left of `share` (a benchmarks.budget.Share, running) at the start; a path its end stops is a row saying so."""
    side = data.base_size(size)
    split = TensorDataset(torch.full((count, 3, side, side), 7, dtype=torch.uint8),
                          torch.zeros(count, dtype=torch.long))
    cfg = dict(batch_size=batch, val_batch_size=batch, num_workers=workers)
    seconds, rows = share.left() / 4, []
    for path, on_device in (("DataLoader", "off"), ("device-resident", "on")):
        try:
            rows += _pipeline_path(path, split, {**cfg, "data_on_device": on_device}, device, size, seconds)
        except OutOfTime:
            rows.append({"path": path, "note": share.stopped()})
            break
    return rows


def _pipeline_path(path, split, cfg, device, size, seconds):
    """The rows of one path of `pipeline_rows` (and, on the device-resident path, its row with TrainAugment)."""
    start = time.perf_counter()
    train, _ = build_loaders(split, split, cfg, seed=0, device=device)
    setup = time.perf_counter() - start
    common = {"images": len(split), "batch": cfg["batch_size"],
              "workers": cfg["num_workers"] if cfg["data_on_device"] == "off" else 0}
    rows = [{"path": path, **common, "set-up s": setup, "images/s": _rate(train, device, seconds)}]
    if cfg["data_on_device"] == "on":
        augment = data.TrainAugment(size).to(device)
        rows.append({"path": f"{path} + TrainAugment", **common, "images/s": _rate(train, device, seconds, augment)})
    return rows


SANITY_IMAGES = {"full": 500, "smoke": 16}  # validation images attacked by the sanity check


def sanity(device, profile, results_dir):
    """SimpleNet at `profile`'s settings for one epoch on the embedded sample (the schedule's warm-up share kept,
    a loss logged every step), then the study's default PGD attack in IEEE fp32 on SANITY_IMAGES[profile] evenly
    spaced validation images, timed after an untimed batch of the same shape (cuDNN tunes new shapes first).
    'loss falls': the last quarter of the logged losses is lower on average than the first quarter; 'attack
    succeeds': the attack reached its target on at least half of the images and top-1 under attack is at most the
    clean top-1."""
    full = experiments.config("simplenet", profile)
    run = experiments.run("simplenet", profile, device=device, results_dir=results_dir, progress=False, epochs=1,
                          warmup_epochs=full["warmup_epochs"] / full["epochs"], log_every=1)
    losses = run.steps["loss"].tolist()
    quarter = max(1, len(losses) // 4)
    val_set, transform = experiments.val_data(run.config)
    images, batch = SANITY_IMAGES[profile], run.config["val_batch_size"]
    loader = attacks.subset_loader(val_set, images, batch_size=batch)
    attack = PGDAttack(**experiments.attack_settings(profile)["default"])
    dev = torch.device(device)
    with precision_context("fp32", dev):
        model = run.load_model(device=dev)
        warm_up = attacks.subset_loader(val_set, min(images, batch), batch_size=batch)  # one batch of the timed shape
        attacks.evaluate_under_attack(model, warm_up, attack, transform=transform, device=dev)  # cuDNN's tuning
        synchronize(dev)
        start = time.perf_counter()
        result = attacks.evaluate_under_attack(model, loader, attack, transform=transform, device=dev)
        synchronize(dev)
        seconds = time.perf_counter() - start
    flops = per_image_flops(run.config)["attack_step"] * attack.num_steps * result["num_images"]
    return {"train steps": len(losses), "first loss": sum(losses[:quarter]) / quarter,
            "last loss": sum(losses[-quarter:]) / quarter, "val top-1": run.metrics["val_acc1"],
            "attacked images": result["num_images"], "clean top-1": result["clean_acc1"],
            "attacked top-1": result["adv_acc1"], "attack success %": result["success_rate"],
            "attack s": seconds, "attack TFLOP/s": flops / seconds / 1e12,
            "loss falls": sum(losses[-quarter:]) < sum(losses[:quarter]),
            "attack succeeds": result["success_rate"] >= 50 and result["adv_acc1"] <= result["clean_acc1"]}
