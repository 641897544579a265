"""User-facing error types. The CLI prints these as one line (no traceback) and exits 2."""


class FedgradError(Exception):
    """Base class for errors caused by user input, data or configuration."""


class ConfigError(FedgradError):
    """A bad or unknown key/value in a scenario or on the command line."""


class DataError(FedgradError):
    """A corpus or file that cannot be read; the message names the file (and line when known)."""
