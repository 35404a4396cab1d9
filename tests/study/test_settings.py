"""lib/study/settings.py: every setting checked; --set values parsed."""
import pytest

from lib import experiments
from lib.study import settings


@pytest.mark.parametrize("settings, message", [
    (dict(warmup_epochs=3, epochs=2), "warmup_epochs must be a number from 0 to epochs"),
    (dict(optimizer="adam"), "optimizer must be one of sgd, adamw, got 'adam'"),
    (dict(epochs=2.5), "epochs must be an integer >= 1, got 2.5"),
    (dict(channels_last="yes"), "channels_last must be true or false"),
    (dict(compile="yes"), "compile must be true, false or auto"),
    (dict(init_from="nope"), "init_from must be null, an experiment"),
    (dict(init_from={"advsimplenet": {"init_from": "simplenet"}}), "must be a run that does not itself use init_from"),
    (dict(init_from={"simplenet": {"lr": -1}}), "simplenet: lr must be a finite number > 0"),
    (dict(train_batches=0), "train_batches must be an integer >= 1, or null"),
])
def test_config_checks_every_setting(settings, message):
    with pytest.raises(experiments.ConfigError, match=message):
        experiments.config("advsimplenet", "smoke", **settings)


def test_set_values_parse_as_json_or_yaml_scalars():
    overrides, attack = settings.parse_assignments([
        "simplenet.epochs=20", "simplenet.lr=1e-3", "simplenet.amp=off", "simplenet.model_kwargs.conv=custom",
        "advsimplenet.init_from={simplenet: {epochs: 20}}", "vit.train_images=null", "attack.epsilon=8"])
    assert overrides == {"simplenet": {"epochs": 20, "lr": 0.001, "amp": "off", "model_kwargs": {"conv": "custom"}},
                         "advsimplenet": {"init_from": {"simplenet": {"epochs": 20}}},
                         "vit": {"train_images": None}}
    assert attack == {"epsilon": 8}
    with pytest.raises(settings.ConfigError, match="--set takes EXPERIMENT.SETTING=VALUE"):
        settings.parse_assignments(["epochs=3"])
