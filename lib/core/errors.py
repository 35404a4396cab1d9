"""The configuration error every layer may raise, and the check of a name against the valid ones."""


class ConfigError(ValueError):
    """An unknown experiment, profile or setting, or a setting out of range; the message says what is valid."""


def check_name(kind, name, valid):
    """Raise ConfigError unless `name` is one of `valid`; the message lists the valid ones."""
    if name not in valid:
        raise ConfigError(f"unknown {kind} {name!r}; valid {kind}s: {', '.join(sorted(valid))}")


class TrainingError(RuntimeError):
    """Training cannot go on (for example a non-finite loss); the message says what to do."""


class CheckpointError(TrainingError):
    """A checkpoint that cannot be read (truncated, empty, not a checkpoint) or does not fit the run (another
    model, optimizer or schedule); the message names the file and what is wrong with it."""


def first_line(error, limit=160):
    """The first line of an exception's message (its type's name when it has none), at most `limit` characters."""
    text = (str(error).strip() or type(error).__name__).splitlines()[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."


class DiskFullError(RuntimeError):
    """A write failed for lack of space; the message names what was written, where, the space left, and that
    finished work is kept."""
