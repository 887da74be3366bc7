"""The errors annorm raises: each carries one actionable sentence for the user.

Library code raises these and never prints or exits; the CLI turns them into one line on
stderr and exit code 2 (bad usage or input). Anything else escaping is a bug (exit code 1).
"""


class AnnormError(Exception):
    """Base class: the message is one sentence saying what is wrong and what to do."""


class BadInputError(AnnormError, ValueError):
    """An argument, tensor or file given to annorm is not what it needs."""


class DeviceUnavailableError(AnnormError):
    """The requested device (cuda, mps) is not present on this machine."""


class WeightsError(AnnormError):
    """A weights file is missing, not safetensors, or does not match its recorded sha256."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: raised where work can stop cleanly (temporary files removed,
    a training run's checkpoint written); the CLI exits 128 + the signal's number."""

    def __init__(self, signum: int = 2) -> None:
        super().__init__(signum)
        self.signum = signum
