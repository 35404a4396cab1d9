"""lib/study/train_all.py: every run a report asks for (each training seed), one per device at once, init_from
order kept (fake devices), and one real try-out on the CPU whose runs a later `Study.runs` re-uses (in
tests/test_bare_machine.py, where the Jupyter stack cannot be imported)."""
import pytest

from lib import experiments
from lib.__main__ import main
from lib.core.devices import DeviceError
from lib.study import PROFILES, REPORTED, SEEDED, SEEDS, Study
from lib.study.train_all import gpu_list, plan, schedule, stopped


def dependencies(profile, names=experiments.EXPERIMENTS, seeds=None):
    """{label: the label of the job it waits for, or None} of the plan of `names` in a study of `profile`."""
    return {label: job.dependency for label, job in plan(Study(profile, seeds=seeds), list(names)).items()}


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
    deps = dependencies("sample")
    assert list(deps) == list(experiments.EXPERIMENTS)  # one seed per experiment in the sample profile
    assert deps["advsimplenet"] == "simplenet" and sum(dep is not None for dep in deps.values()) == 1
    assert dependencies("sample", ["advsimplenet"]) == {"advsimplenet": None}  # its process trains the source itself
    assert set(dependencies("full").values()) == {None}


def test_every_seed_is_a_run_and_each_seed_of_advsimplenet_waits_for_that_seed_of_simplenet():
    deps = dependencies("sample", seeds=3)
    seeded = [f"{name}{suffix}" for name in experiments.EXPERIMENTS for suffix in ("", "-seed1", "-seed2")
              if suffix == "" or name in SEEDED]
    assert list(deps) == seeded and len(deps) == 3 * len(SEEDED) + 2
    assert {label: dep for label, dep in deps.items() if dep} == {
        "advsimplenet": "simplenet", "advsimplenet-seed1": "simplenet-seed1", "advsimplenet-seed2": "simplenet-seed2"}
    assert len(dependencies("full")) == SEEDS["full"] * len(SEEDED) + 2  # the profile's seed count by default


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("seeds", [None, 2])
def test_the_plan_holds_every_run_a_report_asks_for(profile, seeds, tmp_path):
    study = Study(profile, seeds=seeds)
    jobs = plan(study, list(experiments.EXPERIMENTS), tmp_path)
    asked = {study.run_dir(name, replica, tmp_path) for name in REPORTED for replica in range(study.replicas(name))}
    assert asked <= {job.dir for job in jobs.values()} and len(asked) == len(REPORTED) + (
        study.seed_count - 1) * len(SEEDED)


def test_every_experiment_runs_one_per_device_and_waits_for_its_source():
    jobs = dependencies("sample")
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


def test_unknown_gpus_experiments_and_seeds_are_one_line_errors_that_write_nothing(capsys, tmp_path):
    assert main(["train-all", "--gpus", "7", "--results-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: --gpus takes GPU indices below")
    assert main(["train-all", "--gpus", "cpu", "--experiments", "nope", "--results-dir", str(tmp_path)]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err
    assert main(["train-all", "--gpus", "cpu", "--seeds", "0", "--results-dir", str(tmp_path)]) == 2
    assert "seeds must be an integer >= 1" in capsys.readouterr().err
    assert main(["train", "simplenet", "--replica", "-1", "--results-dir", str(tmp_path)]) == 2
    assert "--replica must be 0 or more" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


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
