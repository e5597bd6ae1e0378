"""The one error type users see: a one-line message that names the problem and the fix."""


class CharRNNError(Exception):
    """A user-facing error. Its message is one line: what is wrong, and what to do about it.

    The CLI prints it as ``error: <message>`` and exits non-zero without a traceback.
    """

    exit_code = 1


class UsageError(CharRNNError):
    """Bad settings or arguments (exit code 2, like click's own usage errors)."""

    exit_code = 2


class CheckpointError(CharRNNError):
    """A checkpoint file that is missing, damaged, foreign or from a newer charrnn."""
