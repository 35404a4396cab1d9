"""Tiny models, separable toy data and a short training loop for the attack tests (CPU, seconds)."""
import torch
from torch import nn
import torch.nn.functional as F

from lib.data.transforms import Normalize


def tiny_cnn(num_classes=6):
    """Random CNN with BatchNorm and Dropout: input (B, 3, H, W) in [0, 1] -> logits."""
    return nn.Sequential(Normalize(), nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))


def mlp(num_classes):
    return nn.Sequential(Normalize(), nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU(), nn.Linear(32, num_classes))


def prototype_data(n, seed, num_classes=10):
    """Separable task: each class is a fixed random +-1 pattern of strength 0.2 plus noise. (n, 3, 8, 8)."""
    g = torch.Generator().manual_seed(seed)
    prototypes = torch.randint(0, 2, (num_classes, 3, 8, 8), generator=torch.Generator().manual_seed(0)) * 2 - 1
    labels = torch.randint(0, num_classes, (n,), generator=g)
    images = 0.5 + 0.2 * prototypes[labels] + 0.1 * torch.randn(n, 3, 8, 8, generator=g)
    return images.clamp(0, 1), labels


def train(model, data, steps, hook=None, lr=1e-2):
    """Adam on random batches of 128; `hook` replaces each batch (adversarial training; `steps` steps count as one
    epoch for its progress)."""
    images, labels = data
    optimizer = torch.optim.Adam(model.parameters(), lr)
    g = torch.Generator().manual_seed(0)
    for step in range(steps):
        idx = torch.randint(0, len(images), (128,), generator=g)
        x, y = images[idx], labels[idx]
        if hook is not None:
            x, _ = hook(model, x, y, step / steps)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def random_images(n=4, size=8, seed=0):
    """Uniform pixels with the extremes 0 and 1 present."""
    x = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    x[:, :, 0, 0], x[:, :, 0, 1] = 0.0, 1.0
    return x


def mixed_mode_model():
    """BatchNorm in train mode, Dropout in eval mode, the first conv frozen, a stale .grad on the head."""
    model = tiny_cnn().train()
    model[4].eval()
    model[1].requires_grad_(False)
    model[7].weight.grad = torch.ones_like(model[7].weight)
    return model


def snapshot(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()])
