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


class CannotWrite(CharRNNError):
    """A file (or standard output) could not be written: a full disk, a failing one, or
    permissions. The message names the file and the system's reason, says what was kept,
    and what to do: the advice for the reason, then `then`."""

    def __init__(self, path, error, kept=None, then="run the same command again"):
        self.path, self.error, self.kept, self.then = str(path), error, kept, then
        reason = error.strerror or str(error) or type(error).__name__
        super().__init__(f"cannot write {self.path} ({reason})"
                         + (f"; {kept}" if kept else "") + f"; {_advice(error)} and {then}")

    def instead(self, kept=None, then=None):
        """The same failure with another account of what was kept, or what to do next."""
        return CannotWrite(self.path, self.error, kept or self.kept, then or self.then)


def _advice(error):
    import errno

    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "free some space"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make it writable"
    return "check the disk"
