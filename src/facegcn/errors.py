"""Error types. Every user-facing failure is a :class:`FaceGCNError` with a one-line message.

The CLI maps each subclass to a distinct exit code (``exit_code``) and prints only the message.
"""

from __future__ import annotations


class FaceGCNError(Exception):
    """Base class: a one-line, user-facing error."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # force one line


class InputError(FaceGCNError):
    """A bad input file (unreadable, not an image, too large, ...)."""

    exit_code = 3


class NoFaceError(FaceGCNError):
    """No face was found in an image."""

    exit_code = 4


class ModelFileError(FaceGCNError):
    """A morphable-model or checkpoint file is missing, truncated or has wrong contents."""

    exit_code = 5


class OutputError(FaceGCNError):
    """An output could not be written (read-only directory, full disk, ...)."""

    exit_code = 6


class ConfigError(FaceGCNError):
    """An invalid option or configuration value."""

    exit_code = 2


class PartialFailure(FaceGCNError):
    """A batch finished but some items failed."""

    exit_code = 7


class Interrupted(FaceGCNError):
    """The user stopped the run (Ctrl-C / SIGINT); what had finished is kept."""

    exit_code = 130
