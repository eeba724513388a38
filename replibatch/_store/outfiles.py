"""Which local image files an output cell holds (file-store paths, one or a list of them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from replibatch._table.filetypes import TYPE_BY_SUFFIX

__all__ = ["image_paths"]


def _path(value: Any) -> Path | None:
    if isinstance(value, os.PathLike):
        candidate = Path(value)
    elif isinstance(value, str):
        # File-store outputs are str subclasses carrying the path; plain absolute paths work too.
        text = str(getattr(value, "path", value))
        if "\n" in text or len(text) > 4096 or (not text.startswith(("/", "\\")) and ":" not in text[:3]):
            return None
        candidate = Path(text)
    else:
        return None
    mime = TYPE_BY_SUFFIX.get(candidate.suffix.lower(), "")
    if not mime.startswith("image/"):
        return None
    try:
        return candidate if candidate.is_file() else None
    except (OSError, ValueError):
        return None


def image_paths(output: Any) -> list[Path]:
    """The existing local image files `output` names: a path, or a list/tuple of paths.

    URLs, text and missing files give an empty list (never raises).
    """
    items = output if isinstance(output, (list, tuple)) else [output]
    found = [_path(item) for item in items]
    return [path for path in found if path is not None]
