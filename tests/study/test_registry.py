"""lib/study/registry.py: every experiment in every profile."""
from lib import experiments


def test_every_experiment_builds_in_every_profile():
    for name in experiments.EXPERIMENTS:
        for profile in experiments.PROFILES:
            cfg = experiments.config(name, profile)
            if cfg["model"] == "resnet18":
                cfg["model_kwargs"] = {**cfg["model_kwargs"], "pretrained": False}
            assert experiments.build_model(cfg) is not None


def test_every_profile_says_what_it_is_and_how_many_images_it_attacks():
    for profile in experiments.PROFILES:
        assert experiments.PROFILE_SCOPES[profile] and experiments.Study(profile).seed_count >= 1
        experiments.attack_settings(profile)  # the default and the strong attacks' images and steps


def test_cpu_full_trains_on_every_image_at_reduced_scale():
    """cpu-full: the whole data set (no subset), smaller images and fewer epochs than full, attacks on all of it."""
    for name in experiments.EXPERIMENTS:
        small, full = experiments.config(name, "cpu-full"), experiments.config(name, "full")
        assert small["train_images"] is None and small["val_images"] is None
        assert small["image_size"] < full["image_size"] and small["epochs"] < full["epochs"]
    assert experiments.attack_settings("cpu-full")["images"] is None
