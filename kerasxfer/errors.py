"""Errors meant for the person running kerasxfer.

A :class:`UserError` carries one sentence that names the problem and the fix.
Entry points print it without a traceback and exit with status 2; nothing
already written is removed.
"""

import errno
import os
import re


class UserError(Exception):
    """A problem the user can fix (bad flag, missing file, unusable data)."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def check_choice(flag: str, value, choices) -> None:
    """Refuse a ``--flag`` value that is not one of ``choices``, listing them."""
    if value not in choices:
        raise UserError(f"--{flag}={value!r} is unknown: use {', '.join(choices)}.")


_NO_SPACE = {28, 27, 122}  # ENOSPC, EFBIG, EDQUOT
_NOT_WRITABLE = {13, 1, 30}  # EACCES, EPERM, EROFS


_TMP_PREFIX = re.compile(r"\.tmp-\d+-\d+-")  # fsio.atomic_path's temporary names


def file_in_the_way(path: str):
    """The file (not a folder) at ``path`` or above it that keeps ``path`` from being a folder, if any."""
    p = os.path.abspath(path)
    while True:
        if os.path.lexists(p) and not os.path.isdir(p):
            return p
        parent = os.path.dirname(p)
        if parent == p:
            return None
        p = parent


def os_error_sentence(e: OSError) -> str:
    """One sentence for an operating-system error that reached the top (a full disk, a read-only folder, ...).

    The file named is the one being written, not its temporary name; a file where a folder is needed is named.
    """
    filename = _TMP_PREFIX.sub("", str(e.filename)) if getattr(e, "filename", None) else None
    where = f" {filename}" if filename else ""
    reason = e.strerror or str(e) or type(e).__name__
    if filename and e.errno in (errno.ENOTDIR, errno.EEXIST) and (blocker := file_in_the_way(filename)):
        return (
            f"{blocker} is a file where a folder is needed (writing {filename}): move that file away or "
            "choose another folder, and run the same command again."
        )
    if e.errno in _NO_SPACE:
        return (
            f"no space left on the device (or above the file size limit) writing{where or ' a file'} "
            f"({reason}): free some space and run the same command again; everything up to the last "
            "finished epoch is kept."
        )
    if e.errno in _NOT_WRITABLE:
        return f"cannot write{where or ' a file'} ({reason}): choose a folder you can write, or fix its permissions."
    return f"{reason}:{where or ' (no file named)'}; check that path and run the same command again."


def printable(name: str) -> str:
    """A file name as logs, errors and JSON can carry it: bytes that are not UTF-8 shown as U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
