"""Which local image files an output cell holds (file-store paths, one or a list of them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from replibatch._store.outputs import OutputKind, output_kind
from replibatch._table.filetypes import TYPE_BY_SUFFIX

__all__ = ["image_paths"]


def _path(value: Any, *, local_paths: bool) -> Path | None:
    kind = output_kind(value)
    if kind is OutputKind.STORED_FILE:
        candidate = Path(value.path)
    elif kind is OutputKind.LOCAL_PATH and local_paths:
        # A plain absolute path (a frame read back from Parquet holds str, not OutputFile).
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


def image_paths(output: Any, *, local_paths: bool = False) -> list[Path]:
    """The existing local image files `output` names: a stored file, or a list/tuple of them.

    Only files of our store (`OutputFile`) count unless `local_paths`: a model's text output can
    name any file on this machine ("/home/me/private.jpg"), so whatever sends the image away
    (the judge uploads it) must not follow plain path text. `local_paths=True` is for readers
    that only look at the bytes here (diff's image hash). URLs, text and missing files give an
    empty list (never raises).
    """
    items = output if isinstance(output, (list, tuple)) else [output]
    found = [_path(item, local_paths=local_paths) for item in items]
    return [path for path in found if path is not None]
