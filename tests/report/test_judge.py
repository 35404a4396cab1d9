"""Each claim of the ledger measured from constructed results, and judged: every claim reaches its outcomes."""
import math
import types

import numpy as np
import pandas as pd
import pytest

from lib.report import claims, judge, rules


def run(val_acc1, train_acc1, images_per_s=100.0, n_val=50_000, n_train=50_000, pretrained=None):
    """A finished run as judge reads it: history (val_acc1 per epoch, %) and metrics (last epoch's train and val
    top-1, training throughput)."""
    history = pd.DataFrame({"val_acc1": val_acc1, "val_images": n_val})
    metrics = dict(train_acc1=train_acc1, train_images=n_train, val_acc1=val_acc1[-1],
                   provenance=dict(images_per_s=images_per_s), pretrained_source=pretrained)
    return types.SimpleNamespace(history=history, metrics=metrics)


def right(k, n=1000):
    """Per-image correctness with the first k images right."""
    return np.arange(n) < k


def steps(seconds, memory):
    return {"round_seconds": list(seconds), "peak_memory_mb": memory}


def attacked(top1, top5, n=1000, mse=1e-5):
    rank = np.where(np.arange(n) < top1, 0, np.where(np.arange(n) < top5, 3, 50))
    return dict(adv_rank=rank, mse=np.full(n, mse) * np.linspace(0.9, 1.1, n), l2=np.linspace(1, 2, n) / 255)


def measured_parts(strong):
    """The ledger's parts from results that support every testable claim (strong) or refute it."""
    s = strong
    simplenet = run([38, 39, 40] if s else [10, 30, 40], train_acc1=43 if s else 60)
    vit = run([5, 10, 20, 30, 35] if s else [30, 30, 20], train_acc1=32 if s else 50)
    correct = {"simplenet": [right(400)], "simplenet_custom": [right(200)],
               "improvednet": [right(500 if s else 395)], "vit": [right(350 if s else 200)],
               "vit_global": [right(351 if s else 400)], "advsimplenet": [right(100)]}
    conv = {"native": steps([1.0] * 5, 100), "custom": steps([1.5, 1.4, 1.6, 1.5, 1.45] if s else [1.0] * 5,
                                                             180 if s else 101)}
    vit_costs = {"window": steps([0.7, 0.72, 0.69, 0.71, 0.7] if s else [1.2] * 5, 90 if s else 110),
                 "global": steps([1.0] * 5, 100)}
    versus = {"cnn": steps([1.0] * 5, 1), "vit": steps([3.1, 3.0, 3.2, 2.9, 3.0] if s else [1.1, 1.2, 1.1, 1.0, 1.2],
                                                       1)}
    default = {"per_image": dict(adv_rank=np.where(right(300 if s else 200), 0, 9), l2=np.full(1000, 2.0))}
    longer = {"per_image": dict(adv_rank=np.where(right(200 if s else 300), 0, 9),
                                l2=np.full(1000, 1.5) + np.linspace(-0.1, 0.1, 1000) if s else np.full(1000, 2.5)
                                + np.linspace(-0.1, 0.1, 1000))}
    return {1: judge.claim_1(conv), 2: judge.claim_2(conv), 3: judge.claim_3(correct), 4: judge.claim_4(simplenet),
            5: judge.claim_5(run([50, 55], 90, pretrained="imagenet") if s else run([50, 55], 56),
                             {**correct, "resnet18": [right(550 if s else 380)]}, pretrained=True),
            6: judge.claim_6(vit), 7: judge.claim_7(vit, simplenet), 8: judge.claim_8(vit_costs, correct),
            9: judge.claim_9(versus), 10: judge.claim_10(vit, simplenet),
            11: judge.claim_11(attacked(0, 10) if s else attacked(45, 200)),
            12: judge.claim_12(attacked(0, 0, mse=1e-5 if s else 1e-3)),
            13: judge.claim_13(default, longer),
            14: judge.claim_14([right(400)], [right(300 if s else 390)]),
            15: judge.claim_15(run([1], 1, images_per_s=100), run([1], 1, images_per_s=20 if s else 100))}


def test_every_claim_supported_by_strong_results_and_contradicted_by_opposite_ones():
    supported = {j["claim"].number: j["outcome"] for j in judge.judge(measured_parts(True))}
    contradicted = {j["claim"].number: j["outcome"] for j in judge.judge(measured_parts(False))}
    assert supported == {n: rules.SUPPORTED for n in range(1, 16)}
    assert contradicted == {n: rules.CONTRADICTED for n in range(1, 16)}


def test_resnet_without_imagenet_weights_is_not_testable():
    parts = measured_parts(True)
    parts[5] = judge.claim_5(run([50, 55], 90), {"resnet18": [right(550)]}, pretrained=False)
    judged = {j["claim"].number: j for j in judge.judge(parts)}
    assert judged[5]["outcome"] == rules.NOT_TESTABLE and judged[5]["parts"] == []
    assert judged[5]["reason"] == claims.BY_NUMBER[5].untestable
    one_epoch = judge.claim_6(run([5], 10))
    assert isinstance(one_epoch, str) and "single epoch" in one_epoch
    with pytest.raises(ValueError, match=r"claims \[5\]"):
        judge.judge({n: p for n, p in parts.items() if n != 5})


def test_paired_effect_averages_seeds_per_image():
    a, b = [right(60, 100), right(40, 100)], [right(50, 100), right(50, 100)]
    effect = judge.paired_effect(a, b)
    assert effect.estimate == pytest.approx(0.0)
    per_image = np.concatenate([np.mean(a, axis=0) - np.mean(b, axis=0), [1, -1]])  # and the two added images
    assert effect.se == pytest.approx(per_image.std(ddof=1) / math.sqrt(102))
    agreeing = judge.paired_effect([right(5, 48)], [right(5, 48)])  # no discordant image: not certainty
    assert agreeing.estimate == 0 and agreeing.se > 0.02


def test_log_ratio_effect_is_a_t_over_the_rounds():
    effect = judge.log_ratio_effect(steps([2.0, 2.2, 1.8], 1), steps([1.0, 1.0, 1.0], 1))
    logs = np.log([2.0, 2.2, 1.8])
    assert effect.estimate == pytest.approx(logs.mean()) and effect.df == 2 and effect.sample == "rounds"


def test_converged_share_counts_epochs_to_ninety_percent_of_the_final_top1():
    assert judge.converged_share([10, 37, 40]) == pytest.approx(2 / 3)  # 37 >= 0.9 x 40
    assert judge.converged_share([38, 39, 40]) == pytest.approx(1 / 3)


def test_texts_show_the_estimate_interval_and_threshold():
    part = judge.claim_2({"native": steps([1.0] * 5, 1), "custom": steps([1.5, 1.4, 1.6, 1.5, 1.45], 1)})[0]
    text = judge.part_text(part)
    assert text.startswith("step time, custom / native: 1.49x [") and text.endswith("(claim: > 1.05x)")
    within = judge.claim_8({"window": steps([1] * 3, 1), "global": steps([1] * 3, 1)},
                           {"vit": [right(10, 20)], "vit_global": [right(10, 20)]})[2]
    assert judge.threshold_text(within) == "within ±1.0 points"
    assert judge.show(math.log(2), "ratio") == "2.00x" and judge.show(0.031, "points") == "+3.1 points"
    assert judge.show(0.031, "points", suffix=False) == "+3.1" and "x [" in text
    l2 = measured_parts(True)[13][1]  # the unit once, in the value: the forest figure's axis adds it to the name
    assert l2.name == "L2 change, longer - default" and judge.part_text(l2).endswith("(claim: < +0.0/255)")
    judged = judge.judge({**measured_parts(True), 3: [rules.Part("d", rules.Normal(0.02, 0.01), "above",
                                                                 claims.ACCURACY_MARGIN)]})
    assert "times as many images" in judge.more_data_text(judged[2])
    assert judge.more_data_text(judged[0]) == ""
