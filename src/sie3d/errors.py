"""User-facing errors.

Every failure a user can cause or fix (a bad photo, a missing model file, a wrong option) is a
`Sie3dError` subclass with its own exit code. The CLI prints `message` and `hint` on one line each
and exits with `exit_code` -- never a traceback.
"""

from __future__ import annotations


class Sie3dError(Exception):
    """Base class: a problem the user can understand and fix."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  fix: {self.hint}" if self.hint else self.message


class UsageError(Sie3dError):
    """Wrong command-line arguments or option values."""

    exit_code = 2


class TextError(UsageError):
    """The expression text cannot be used: empty, control characters, or far too long."""

    exit_code = 2


class AssetError(Sie3dError):
    """A model file or the head model is missing, corrupt or cannot be fetched."""

    exit_code = 3


class PhotoError(Sie3dError):
    """The file is missing, not an image, truncated, or of an unusable size."""

    exit_code = 4


class NoFaceError(Sie3dError):
    """The image is readable but no face was found in it (or not the requested one)."""

    exit_code = 5


class PersonError(Sie3dError):
    """A saved person folder (`sie3d.avatar.Person.save`) is missing, damaged or of another format version."""

    exit_code = 6


class OutputError(Sie3dError):
    """The outputs cannot be written: the output path is a file, the disk is full, the file size limit is
    reached, or the folder is read-only or not writable."""

    exit_code = 7


class BatchError(Sie3dError):
    """A batch finished with items that failed (each recorded in its summary); the finished ones are kept."""

    exit_code = 8


EXIT_CODES = {cls.__name__: cls.exit_code for cls in (UsageError, TextError, AssetError, PhotoError, NoFaceError,
                                                    PersonError, OutputError, BatchError)}
