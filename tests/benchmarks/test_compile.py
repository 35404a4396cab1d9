"""benchmarks/compile.py: the speed-up and payback arithmetic of a compiled model against the eager one."""
from benchmarks import compile as compile_benchmark


def result(eager, compiled, first_compiled):
    return {"first": {"eager": eager, "compiled": first_compiled},
            "steps": {"eager": [eager] * 3, "compiled": [compiled] * 3}}


def test_payback_counts_the_steps_that_make_up_the_compilation():
    cfg = {"batch_size": 64}
    row = compile_benchmark.row("simplenet", cfg, result(0.2, 0.1, 10.2), 744).strip("| ").split(" | ")
    assert row[5:8] == ["2.00 [2.00, 2.00]", "100", "744"]
    slower = compile_benchmark.row("simplenet", cfg, result(0.2, 0.3, 10.0), 744).strip("| ").split(" | ")
    assert slower[5:7] == ["0.67 [0.67, 0.67]", "never"]
