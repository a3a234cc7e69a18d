"""Errors a user can fix. Every message names the fix."""

from __future__ import annotations


class StudioError(Exception):
    """A problem the user can fix; the message says how."""

    exit_code = 2


class InvalidRequest(StudioError):
    """A generation request that fails validation."""


class ModelMissing(StudioError):
    """The model path or hub id cannot be loaded."""


class UnsupportedOnDevice(StudioError):
    """An option that this device cannot run (e.g. CUDA-only offload on CPU)."""


class NotFound(StudioError):
    """A record, token, asset or file that does not exist."""


class Cancelled(StudioError):
    """The user cancelled the generation."""


class InsufficientMemory(StudioError):
    """A generation whose estimated peak memory exceeds what is free (refused before allocating)."""


class StorageError(StudioError):
    """The data folder cannot take the results (read-only, full, not a folder)."""
