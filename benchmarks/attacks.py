"""PGD cost against its floor: num_steps x (forward + backward w.r.t. the input) of the same model and batch.

    python -m benchmarks.attacks [--batch 64] [--size 128] [--repeats 7] [--device auto] [--threads N]

Both sides run interleaved in one process (eval mode, frozen parameters, gradient w.r.t. the
input only); the table gives medians over the repeats and the ratio PGD / floor (target <= 1.15).
A last row times one forward + backward that also computes the weight gradients, to show what
freezing the parameters saves. Writes benchmarks/attacks.json.
"""
import statistics

import torch
from torch import nn
import torch.nn.functional as F

import benchmarks
from lib.attacks.pgd import PGDAttack, frozen_eval
from lib.data.transforms import Normalize
from lib.training.step_costs import timed


ATTACKS = {  # name -> PGDAttack settings
    "PGD-1, least-likely": dict(num_steps=1),
    "PGD-4, untargeted (training)": dict(num_steps=4, step_size=2 / 255, epsilon=8 / 255, targeted=None),
    "PGD-10, least-likely (report)": dict(num_steps=10),
}
WEIGHT_GRADS = "fwd+bwd also filling weight grads"


def bottleneck(c_in, c_mid, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_mid, 1), nn.ReLU(), nn.Conv2d(c_mid, c_mid, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(c_mid, c_out, 1), nn.ReLU())


def stand_in_simplenet(num_classes=100):
    """SimpleNet's layers as REFERENCE.md lists them, for when lib.models.cnn is not there yet."""
    return nn.Sequential(Normalize(), nn.Conv2d(3, 64, 7, stride=2, padding=3), nn.ReLU(), nn.MaxPool2d(2),
                         bottleneck(64, 64, 256), nn.MaxPool2d(2), bottleneck(256, 128, 512),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))


def build_model():
    try:
        from lib.models.cnn import SimpleNet
    except ImportError:
        return stand_in_simplenet(), "stand-in SimpleNet (lib.models.cnn missing)"
    return SimpleNet(conv_op=nn.Conv2d, num_classes=100), "lib.models.cnn.SimpleNet"


def input_grad_steps(model, images, labels, num_steps):
    """The floor: num_steps x (forward + backward w.r.t. the input), parameters frozen."""
    with frozen_eval(model):
        for _ in range(num_steps):
            x = images.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(x), labels, reduction="sum"), x)


def full_backward(model, images, labels):
    """One forward + backward that also fills the weight gradients (what PGD avoids)."""
    model.eval()
    F.cross_entropy(model(images.detach().requires_grad_(True)), labels, reduction="sum").backward()
    model.zero_grad(set_to_none=True)


def medians(pairs, repeats, device):
    """pairs: name -> (fn, floor_fn), timed interleaved after one warm-up round -> name -> (s, floor s)."""
    times = {name: ([], []) for name in pairs}
    for repeat in range(repeats + 1):
        for name, fns in pairs.items():
            for fn, samples in zip(fns, times[name]):
                elapsed = timed(fn, device)
                if repeat:
                    samples.append(elapsed)
    return {name: tuple(statistics.median(samples) for samples in both) for name, both in times.items()}


def run(args):
    device = torch.device(args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model, model_name = build_model()
    model.to(device)
    images = torch.rand(args.batch, 3, args.size, args.size, device=device)
    labels = torch.randint(0, 100, (args.batch,), device=device)
    attacks = {name: PGDAttack(**settings) for name, settings in ATTACKS.items()}
    pairs = {name: (lambda a=attack: a.perturb(model, images, labels),
                    lambda n=attack.num_steps: input_grad_steps(model, images, labels, n))
             for name, attack in attacks.items()}
    pairs[WEIGHT_GRADS] = (lambda: full_backward(model, images, labels),
                           lambda: input_grad_steps(model, images, labels, 1))
    steps = {name: attack.num_steps for name, attack in attacks.items()} | {WEIGHT_GRADS: 1}
    rows = [dict(name=name, num_steps=steps[name], ms=1e3 * t, floor_ms=1e3 * floor, ratio=t / floor)
            for name, (t, floor) in medians(pairs, args.repeats, device).items()]
    return dict(model=model_name, device=str(device), torch=torch.__version__, threads=torch.get_num_threads(),
                batch=args.batch, size=args.size, repeats=args.repeats, rows=rows)


def print_table(result):
    print(f"{result['model']}, batch {result['batch']} x 3 x {result['size']} x {result['size']}, "
          f"{result['device']}, {result['threads']} threads, torch {result['torch']}, "
          f"median of {result['repeats']} repeats")
    print(f"{'measured':<34} {'steps':>5} {'ms':>9} {'floor ms':>9} {'ratio':>6}")
    for row in result["rows"]:
        print(f"{row['name']:<34} {row['num_steps']:>5} {row['ms']:>9.1f} {row['floor_ms']:>9.1f} {row['ratio']:>6.3f}")
    print("floor = num_steps x (forward + backward w.r.t. the input only), same model and batch")


def arguments(parser):
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=128, choices=(64, 128))
    parser.add_argument("--repeats", type=int, default=7)


if __name__ == "__main__":
    benchmarks.main(__file__, __doc__, arguments, run, print_table)
