"""lib/training/metrics.py: top-k counts and the meter."""
import torch

from lib.training.metrics import Meter, correct_topk


def test_correct_topk_and_meter():
    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5]])
    labels = torch.tensor([0, 0])
    c1, c5 = correct_topk(logits, labels)
    assert (c1.item(), c5.item()) == (1, 1)
    meter = Meter("cpu")
    meter.update(torch.tensor(2.0), logits, labels)
    meter.add({"clean_correct": torch.tensor(2)})
    result = meter.result("train")
    assert result == {"train_loss": 2.0, "train_acc1": 50.0, "train_acc5": 50.0, "train_images": 2,
                      "train_clean_acc1": 100.0}


def test_topk_counts_ties_against_the_label_on_fp32():
    logits = torch.tensor([[1.0, 1.0, 0.0], [2.0, 1.0, 1.0], [float("nan"), 0.0, 0.0]], dtype=torch.bfloat16)
    labels = torch.tensor([0, 0, 0])
    c1, c2 = correct_topk(logits, labels, ks=(1, 2))
    assert (c1.item(), c2.item()) == (1, 2)  # row 0 ties (top-2 only), row 1 wins, a NaN logit never hits
