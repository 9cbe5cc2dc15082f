"""Errors vrme reports to users: each message names the file, row, column or frame at fault."""

from __future__ import annotations


class UserError(Exception):
    """Base class of errors caused by input, config or environment, not by a bug."""


class DataError(UserError):
    """Input data is malformed (a spreadsheet, a frame, a table). Retrying will not help."""


class LabelError(DataError):
    """A label spreadsheet or table is malformed; the message names file, row and column."""


class FrameError(DataError):
    """A frame cannot be read or decoded; the message names the file."""


class NoFaceError(DataError):
    """No face was detected in any window of a video."""
