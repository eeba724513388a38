"""Which local image files an output cell holds (file-store paths, one or a list of them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replibatch._store.outputs import OutputKind, output_kind
from replibatch._table.filetypes import TYPE_BY_SUFFIX

__all__ = ["image_paths"]


def _path(value: Any) -> Path | None:
    kind = output_kind(value)
    if kind is OutputKind.STORED_FILE:
        candidate = Path(value.path)
    elif kind is OutputKind.LOCAL_PATH:
        # An absolute path in the user's own frame (or a Path): the judge and diff take those.
        candidate = Path(value)
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
