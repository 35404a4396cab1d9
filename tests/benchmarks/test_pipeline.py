"""benchmarks/pipeline.py: the trainer, its step and the bare step timed round by round on the same batches."""
import torch

from benchmarks import pipeline
from tests.training.toy_training import trainer


def test_each_side_is_timed_per_step_in_every_round_and_the_bare_step_trains(tmp_path):
    run = trainer(tmp_path, train_batches=3, epochs=100, log_every=10 ** 9)
    run.resolve_amp()
    before = [p.detach().clone() for p in run.model.parameters()]
    times = pipeline.measure(run, steps=3, rounds=2)
    assert list(times) == list(pipeline.SIDES) and all(len(v) == 2 and min(v) > 0 for v in times.values())
    assert run.scheduler.last_epoch == (2 + 1) * 2 * 3  # rounds (a warm-up too) x the two sides that move it x steps
    images, labels = pipeline.fixed_batch(run)
    assert images.shape == (16, 3, 8, 8) and images.dtype == torch.float32 and labels.shape == (16,)
    run.optimizer.zero_grad()
    pipeline.bare_step(run, images, labels)
    assert any(not torch.equal(a, b) for a, b in zip(before, run.model.parameters()))


def test_a_ratio_is_the_median_of_the_rounds_with_their_range():
    assert pipeline.ratio_text([2.0, 3.0, 4.0], [1.0, 1.0, 2.0]) == "2.00 [2.00, 3.00]"
