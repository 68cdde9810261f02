"""Errors the CLI reports as one line (no traceback): bad configuration, bad data, a diverged run."""


class RmlabError(Exception):
    """Base class: the message is complete and names what to fix."""


class ConfigError(RmlabError, ValueError):
    """A configuration that composes but cannot be used; the message names the valid choices."""


class DataError(RmlabError, ValueError):
    """Bad input data; the message names the file and the row."""


class TrainingDiverged(RmlabError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""
