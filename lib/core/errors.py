"""The configuration error every layer may raise, and the check of a name against the valid ones."""


class ConfigError(ValueError):
    """An unknown experiment, profile or setting, or a setting out of range; the message says what is valid."""


def check_name(kind, name, valid):
    """Raise ConfigError unless `name` is one of `valid`; the message lists the valid ones."""
    if name not in valid:
        raise ConfigError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(valid))}")


class TrainingError(RuntimeError):
    """Training cannot go on (for example a non-finite loss); the message says what to do."""
