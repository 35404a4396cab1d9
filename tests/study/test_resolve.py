"""lib/study/resolve.py: an experiment's configuration and the attack settings of a profile."""
import pytest

from lib import attacks, experiments
from lib.study import settings


def test_config_resolution_order():
    cfg = experiments.config("simplenet_custom", "full", epochs=3, warmup_epochs=1)
    assert cfg["epochs"] == 3 and cfg["batch_size"] == 256 and cfg["model_kwargs"] == {"conv": "custom"}
    assert experiments.config("simplenet_custom", "full")["epochs"] == 10
    assert experiments.config("simplenet", "smoke")["image_size"] == experiments.PROFILES["smoke"]["image_size"]


@pytest.mark.parametrize("call, message", [
    (lambda: experiments.config("nope"), "unknown experiment 'nope'; valid experiments: .*simplenet"),
    (lambda: experiments.config("simplenet", "huge"),
     "unknown profile 'huge'; valid profiles: cpu-full, full, sample, smoke"),
    (lambda: experiments.config("simplenet", "smoke", epoch=3), "unknown setting.*epoch.*valid settings"),
])
def test_bad_names_list_the_valid_ones(call, message):
    with pytest.raises(experiments.ConfigError, match=message):
        call()


def test_attack_settings_are_pixel_units_with_overrides_in_255ths():
    harness = experiments.attack_settings("sample")
    assert harness["default"]["epsilon"] == pytest.approx(0.1 * attacks.PIXEL_PER_NORMALIZED)
    assert harness["default"]["step_size"] == pytest.approx(harness["default"]["epsilon"] / 10)
    assert harness["images"] is None and experiments.attack_settings("smoke")["images"] == 16
    changed = experiments.attack_settings("sample", epsilon=8, steps=20, images=50)
    assert changed["default"] == {"num_steps": 20, "epsilon": pytest.approx(8 / 255),
                                  "step_size": pytest.approx(8 / 255 / 20)}
    assert changed["images"] == 50
    assert experiments.attack_settings("sample", step_size=2)["default"]["step_size"] == pytest.approx(2 / 255)
    assert experiments.attack_settings("full", dry_run=True)["images"] == experiments.DRY_RUN["attack_images"]
    attacks.PGDAttack(**changed["default"])  # accepted as they are
    # the stronger attacks: at the default's epsilon, on at most as many images as it
    assert harness["strong_images"] == experiments.STRONG_ATTACKS["images"]["sample"]
    assert changed["strong"]["epsilon"] == pytest.approx(8 / 255) and changed["strong_images"] == 50
    assert experiments.attack_settings("full")["strong"]["num_steps"] == 100
    assert experiments.attack_settings("full", dry_run=True)["strong_images"] == experiments.DRY_RUN["attack_images"]
    attacks.AutoPGD("ce", **changed["strong"])
    for bad, message in ((dict(eps=8), "unknown attack setting.*eps.*valid: epsilon"),
                         (dict(epsilon=0), "attack epsilon must be a number in \\(0, 255\\]"),
                         (dict(steps=0), "attack steps must be an integer >= 1")):
        with pytest.raises(settings.ConfigError, match=message):
            experiments.attack_settings("sample", **bad)
