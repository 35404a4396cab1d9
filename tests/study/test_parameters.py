"""lib/study/parameters.py: the Study (overrides, seeds) and the description of its settings."""
import pytest

from lib import experiments
from lib.study import parameters as study


def test_describe_settings_states_every_change_and_a_dry_run():
    text = study.describe_settings("sample", {"simplenet": {"epochs": 20, "lr": 0.05}}, {"epsilon": 8}, dry_run=True)
    assert text.startswith("**DRY RUN**")
    assert "`simplenet`: epochs = 20 (registry: 8)" in text
    assert "lr" not in text  # 0.05 is the registry's value: not a change
    assert "`attack`: epsilon = 8/255 (registry: 5.76/255)" in text
    assert study.describe_settings("smoke").endswith("unchanged.")


def test_study_checks_its_overrides_and_keeps_them_per_experiment(tmp_path):
    with pytest.raises(experiments.ConfigError, match="unknown experiment 'simplenett'"):
        study.Study("smoke", overrides={"simplenett": {"epochs": 1}})
    with pytest.raises(experiments.ConfigError, match="unknown setting.*epoch of simplenet"):
        study.Study("smoke", overrides={"simplenet": {"epoch": 1}})
    plan = study.Study("smoke", overrides={"simplenet": {"epochs": 1}})
    assert plan.config("simplenet")["epochs"] == 1 and plan.config("improvednet")["epochs"] == 2
    # an overridden run keeps its own directory; the registry's source of init_from stays the registry's
    assert experiments.run_dir("simplenet", "smoke", {"epochs": 1}) != experiments.run_dir("simplenet", "smoke")


def test_seeds_train_one_cached_run_each_and_are_reused(tmp_path, monkeypatch):
    plan = study.Study("smoke", seeds=2, overrides={"simplenet": {"epochs": 1}})
    first = plan.runs("simplenet", results_dir=tmp_path, progress=False)
    assert [run.config["seed"] for run in first] == [0, 1] and first[0].dir != first[1].dir
    assert first[0].dir == plan.run("simplenet", results_dir=tmp_path, progress=False).dir  # seed 0: a plain run's
    assert not (first[0].history["val_acc1"].equals(first[1].history["val_acc1"])
                and first[0].steps["loss"].equals(first[1].steps["loss"]))  # another seed trains another network

    def no_training(*args, **kwargs):
        raise AssertionError("a cached seed was trained again")
    monkeypatch.setattr("lib.study.runs.Trainer.fit", no_training)
    again = study.Study("smoke", seeds=2, overrides={"simplenet": {"epochs": 1}}).runs(
        "simplenet", results_dir=tmp_path, progress=False)
    assert [run.dir for run in again] == [run.dir for run in first]


def test_seeds_default_per_profile_and_apply_to_compared_experiments_only():
    assert study.Study("sample").seed_count == experiments.SEEDS["sample"] == 1
    assert study.Study("full").seed_count == 3 and study.Study("full", seeds=2).seed_count == 2
    plan = study.Study("sample", seeds=3, overrides={"simplenet": {"seed": 5}})
    assert plan.replicas("simplenet") == 3 and plan.replicas("simplenet_custom") == 1
    assert [plan.config("simplenet", i)["seed"] for i in range(3)] == [5, 6, 7]
    # seed i of AdvSimpleNet (fine-tuned on the sample) starts from seed i of its source, with the source's settings
    assert plan.config("advsimplenet", 0)["init_from"] == "simplenet"
    assert plan.config("advsimplenet", 2)["init_from"] == {"simplenet": {"seed": 2}}
    assert plan.config("advsimplenet", 2)["seed"] == 2
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(experiments.ConfigError, match="seeds must be an integer >= 1"):
            study.Study("smoke", seeds=bad)
    text = study.describe_settings("sample", seeds=3)
    assert "`study`: seeds = 3 (registry: 1)" in text
