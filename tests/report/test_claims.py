"""The claims ledger covers the reference's 15 claims, and its rules are declared, not read from results."""
import copy
import re
from pathlib import Path

from lib.report import claims


def test_every_claim_of_the_reference_has_its_row():
    reference = (Path(__file__).parents[3] / "shared" / "REFERENCE.md")
    numbers = [claim.number for claim in claims.CLAIMS]
    assert numbers == list(range(1, 16))
    if reference.exists():  # ../shared beside the checkout: the table "The reference report's claims"
        rows = re.findall(r"^\| (\d+) \| ([^|]+) \|", reference.read_text(), flags=re.M)
        assert [int(n) for n, _ in rows] == numbers
        assert [part.strip() for _, part in rows] == [claim.part for claim in claims.CLAIMS]
    for claim in claims.CLAIMS:
        assert claim.claim and claim.where and claim.quantity and claim.test and claim.threshold
        assert set(claim.profiles) <= set(claims.ALL_PROFILES)
        assert claim.untestable or claim.profiles == claims.ALL_PROFILES


def test_thresholds_are_the_declared_values():
    """Changing a threshold means changing this test too: in review, beside the reason in claims.py."""
    assert (claims.ACCURACY_MARGIN, claims.FAR_MARGIN, claims.COST_MARGIN, claims.CLEAR_MEMORY, claims.SEVERAL,
            claims.CLOSE_GAP, claims.LARGE_GAP, claims.CONVERGENCE_MARGIN, claims.CONVERGED,
            claims.SAME_LOOKING_PSNR, claims.CHANCE_TOP1, claims.CHANCE_TOP5) == (
        0.01, 0.05, 0.05, 1.10, 2.0, 0.05, 0.10, 0.10, 0.9, 40.0, 0.01, 0.05)
    assert claims.LONGER_ATTACK == dict(steps=2, scale=0.5)


def test_judging_results_leaves_the_ledger_unchanged():
    from tests.report.test_judge import measured_parts  # constructed results, both ways
    from lib.report import judge
    before = copy.deepcopy((claims.CLAIMS, {k: v for k, v in vars(claims).items() if k.isupper()}))
    for strong in (True, False):
        judge.judge(measured_parts(strong))
    assert (claims.CLAIMS, {k: v for k, v in vars(claims).items() if k.isupper()}) == before
