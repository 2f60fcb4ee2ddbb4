"""Errors meant for the person running kerasxfer.

A :class:`UserError` carries one sentence that names the problem and the fix.
Entry points print it without a traceback and exit with status 2; nothing
already written is removed.
"""


class UserError(Exception):
    """A problem the user can fix (bad flag, missing file, unusable data)."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code
