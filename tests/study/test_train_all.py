"""lib/study/train_all.py: experiments one per device at once, init_from order kept (fake devices), and one real
try-out on the CPU whose runs a later `experiments.run` re-uses."""
import pytest

from lib import experiments
from lib.__main__ import main
from lib.core.devices import DeviceError
from lib.study.train_all import dependencies, gpu_list, schedule, stopped


class FakeProcess:
    """Running for `rounds` polls, then exits with `status`."""

    def __init__(self, rounds, status):
        self.rounds, self.status = rounds, status

    def poll(self):
        self.rounds -= 1
        return self.status if self.rounds < 0 else None


def run_fake(jobs, devices, rounds=None, failing=()):
    """schedule() with fake processes; returns (ended, starts [(name, device)], the largest number running at once)."""
    starts, busiest = [], [0]

    def start(name, device):
        starts.append((name, device))
        return FakeProcess((rounds or {}).get(name, 1), 1 if name in failing else 0)

    def poll(slots):
        busiest[0] = max(busiest[0], sum(job is not None for job in slots.values()))
    return schedule(jobs, devices, start, poll, interval=0), starts, busiest[0]


def test_the_sample_profiles_init_from_becomes_a_dependency():
    deps = dependencies(list(experiments.EXPERIMENTS), "sample")
    assert deps["advsimplenet"] == "simplenet" and sum(dep is not None for dep in deps.values()) == 1
    assert dependencies(["advsimplenet"], "sample") == {"advsimplenet": None}  # its process trains the source itself
    assert set(dependencies(list(experiments.EXPERIMENTS), "full").values()) == {None}


def test_every_experiment_runs_one_per_device_and_waits_for_its_source():
    jobs = dependencies(list(experiments.EXPERIMENTS), "sample")
    ended, starts, busiest = run_fake(jobs, ["0", "1", "2"], rounds={"simplenet": 6})
    assert sorted(ended) == sorted(experiments.EXPERIMENTS) and set(ended.values()) == {0}
    assert busiest == 3 and len(starts) == len(experiments.EXPERIMENTS)
    order = [name for name, _ in starts]
    assert order.index("advsimplenet") > order.index("simplenet")
    assert list(ended).index("simplenet") < order.index("advsimplenet")  # started only once simplenet had ended
    assert order[:3] == list(experiments.EXPERIMENTS)[:3] and {d for _, d in starts} == {"0", "1", "2"}


def test_a_failed_source_leaves_its_dependent_unstarted():
    jobs = {"simplenet": None, "vit": None, "advsimplenet": "simplenet"}
    ended, starts, _ = run_fake(jobs, ["0", "1"], failing={"simplenet"})
    assert ended["simplenet"] == 1 and ended["vit"] == 0 and ended["advsimplenet"] is None
    assert "advsimplenet" not in [name for name, _ in starts]


def test_one_device_runs_the_jobs_one_after_the_other():
    ended, starts, busiest = run_fake({"simplenet": None, "advsimplenet": "simplenet", "vit": None}, ["cpu"])
    assert busiest == 1 and [name for name, _ in starts] == ["simplenet", "advsimplenet", "vit"]


def test_gpu_lists_are_checked():
    assert gpu_list("0,1, 3", 4) == ["0", "1", "3"] and gpu_list("cpu,cpu", 0) == ["cpu", "cpu"]
    for bad in ("", "4", "0,x", "-1"):
        with pytest.raises(DeviceError, match="--gpus takes GPU indices below 4"):
            gpu_list(bad, 4)


def test_train_all_on_two_cpu_slots_writes_the_runs_a_later_run_re_uses(tmp_path, capsys):
    assert main(["train-all", "--profile", "smoke", "--gpus", "cpu,cpu", "--experiments", "simplenet",
                 "improvednet", "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "simplenet" in out and "finished" in out and "failed" not in out
    for name in ("simplenet", "improvednet"):
        assert (tmp_path / "train-all" / "smoke" / f"{name}.log").exists()
        path = tmp_path / "runs" / name / "smoke"
        stamp = (path / "metrics.json").stat().st_mtime_ns
        again = experiments.run(name, "smoke", results_dir=tmp_path, device="cpu", progress=False)
        assert again.dir == path and (path / "metrics.json").stat().st_mtime_ns == stamp


def test_unknown_gpus_and_experiments_are_one_line_errors(capsys):
    assert main(["train-all", "--gpus", "7"]) == 2
    assert capsys.readouterr().err.startswith("error: --gpus takes GPU indices below")
    assert main(["train-all", "--gpus", "cpu", "--experiments", "nope"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err


def test_a_stop_request_starts_no_more_jobs_and_sums_up_what_is_kept(tmp_path):
    """After SIGINT (stopping() true once the first job started) the pending jobs are not started, the running one
    is waited for, and the line names each experiment's outcome."""
    starts = []

    def start(name, device):
        starts.append(name)
        return FakeProcess(2, 130)
    ended = schedule({"simplenet": None, "vit": None, "advsimplenet": "simplenet"}, ["cpu"], start, interval=0,
                     stopping=lambda: bool(starts))
    assert starts == ["simplenet"] and ended == {"vit": None, "advsimplenet": None, "simplenet": 130}
    line = str(stopped(2, {**ended, "resnet18": 0, "improvednet": 1}, tmp_path, lambda name: name == "resnet18"))
    assert line == (f"SIGINT stopped train-all (finished: resnet18; stopped, their checkpoints kept: simplenet; "
                    f"failed: improvednet; not started: vit, advsimplenet; logs in {tmp_path}): run the same command "
                    "again to continue")
