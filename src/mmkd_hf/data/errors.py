"""Errors raised by the data layer. Every message names the file and, where there is one, the sample."""

from __future__ import annotations

import os


class DataFormatError(ValueError):
    """An annotation or data file does not have the expected format.

    Args:
        path: the offending file.
        reason: what is wrong, ideally "expected X, got Y".
        sample_id: the row/sample concerned, if any.
    """

    def __init__(self, path: str | os.PathLike | None, reason: str, sample_id: str | None = None):
        self.path = None if path is None else str(path)
        self.reason = reason
        self.sample_id = sample_id
        where = f" (sample {sample_id!r})" if sample_id is not None else ""
        super().__init__(f"{self.path}{where}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.sample_id))


class SampleDecodeError(ValueError):
    """One sample could not be decoded (missing/corrupt frame, truncated audio, bad label, ...).

    Args:
        sample_id: the segment id (EPIC narration id, SSv2 video id).
        path: the file that failed (frame, audio, detections), or None.
        reason: what went wrong.
    """

    def __init__(self, sample_id: str, path: str | os.PathLike | None, reason: str):
        self.sample_id = str(sample_id)
        self.path = None if path is None else str(path)
        self.reason = reason
        location = f" file {self.path}:" if self.path else ""
        super().__init__(f"sample {self.sample_id!r}:{location} {reason}")

    def __reduce__(self):  # picklable across DataLoader worker processes
        return (type(self), (self.sample_id, self.path, self.reason))


class FileDecodeError(ValueError):
    """A single file failed to decode; the transform turns it into a :class:`SampleDecodeError`."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.reason))
