"""What an output value is: a file of our store, a URL, missing, or text - decided in one place.

A model's output (or one item of a list of outputs) reaches the store, the views, the judge and
the downloader; each used to decide for itself what it was looking at. `output_kind` is that
decision. Its rules, and why:

- missing: None, NaN, pd.NA, NaT (what pandas puts in a cell with no output);
- a stored file: an `OutputFile` - only values the run itself made from a download or a
  ``data:`` URI, so only files of our store are ever read back (a model's text output, or a
  prompt, can be "/home/me/.ssh/id_rsa"); a `MISSING_FILE` when its file is gone;
- a URL: exactly one http(s) URL with a host and nothing around it (what Replicate returns for
  file outputs; text that merely starts with one is text), a ``data:`` URI likewise;
- a local path: other text (or an ``os.PathLike``) that is one absolute path: never read by
  views, but shown as a missing file rather than as prose;
- text, or other (numbers, lists, dicts).
"""

from __future__ import annotations

import base64
import enum
import html
import math
import mimetypes
import os
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from replibatch._table.filetypes import TYPE_BY_SUFFIX

__all__ = [
    "DATA_URI",
    "INLINE_LIMIT_BYTES",
    "OutputFile",
    "OutputKind",
    "is_data_uri",
    "is_http_url",
    "output_kind",
]

#: Files up to this size are embedded in notebook HTML; larger ones are shown as a link.
INLINE_LIMIT_BYTES = 5 * 2**20

DATA_URI = re.compile(
    r"data:(?P<type>[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+)?"
    r"(?P<params>(?:;[a-z0-9!#$&^_.+-]+=[^,;\s]+)*)(?P<base64>;base64)?,",
    re.IGNORECASE,
)


def is_http_url(text: str) -> bool:
    """True if `text` is exactly one http(s) URL with a host (no surrounding text)."""
    if not text.startswith(("https://", "http://")) or any(c.isspace() for c in text):
        return False
    try:
        return bool(urlsplit(text).netloc)
    except ValueError:
        return False


def is_data_uri(text: str) -> bool:
    """True if `text` is a well-formed ``data:`` URI."""
    return text.startswith("data:") and DATA_URI.match(text) is not None


class OutputFile(str):
    """A local output file: a ``str`` of its absolute path, plus `path` and the original `url`.

    Pandas, CSV and Parquet see a plain string; Jupyter shows images, audio and video inline.
    """

    __slots__ = ("url",)
    url: str | None

    def __new__(cls, path: str | os.PathLike[str], url: str | None = None) -> OutputFile:
        self = super().__new__(cls, os.fspath(path))
        self.url = url
        return self

    @property
    def path(self) -> Path:
        return Path(str(self))

    @property
    def media_type(self) -> str | None:
        suffix = self.path.suffix.lower()
        return TYPE_BY_SUFFIX.get(suffix) or mimetypes.guess_type(f"x{suffix}")[0]

    def __reduce__(self) -> tuple[Any, ...]:
        return (OutputFile, (str(self), self.url))

    def __repr__(self) -> str:
        return f"OutputFile({str(self)!r}, url={self.url!r})"

    def _repr_html_(self) -> str:
        media_type = self.media_type or ""
        kind = media_type.split("/", 1)[0]
        name = html.escape(self.path.name, quote=True)
        try:
            size = self.path.stat().st_size
        except OSError:
            return f"<span>missing file {name}</span>"
        if kind in ("image", "audio", "video") and size <= INLINE_LIMIT_BYTES:
            data = base64.b64encode(self.path.read_bytes()).decode("ascii")
            src = html.escape(f"data:{media_type};base64,{data}", quote=True)
            title = html.escape(self.url or str(self), quote=True)
            if kind == "image":
                return f'<img src="{src}" title="{title}" alt="{name}" style="max-width:100%">'
            return f'<{kind} controls src="{src}" title="{title}"></{kind}>'
        href = html.escape(self.path.as_uri(), quote=True)
        return f'<a href="{href}">{name}</a>'


class OutputKind(enum.Enum):
    """What one output value is (see the module docstring for the rules)."""

    MISSING = "missing"
    STORED_FILE = "stored_file"
    MISSING_FILE = "missing_file"
    URL = "url"
    DATA_URI = "data_uri"
    LOCAL_PATH = "local_path"
    TEXT = "text"
    OTHER = "other"


def _is_absolute_path_text(text: str) -> bool:
    # One line, of a path's length, absolute on POSIX ("/x"), UNC ("\\x") or Windows ("C:").
    if "\n" in text or len(text) > 4096:
        return False
    return text.startswith(("/", "\\")) or ":" in text[:3]


def output_kind(value: Any) -> OutputKind:
    """Classify one output value (a list is `OTHER`: classify its items). Never raises."""
    if value is None:
        return OutputKind.MISSING
    if isinstance(value, float):
        return OutputKind.MISSING if math.isnan(value) else OutputKind.OTHER
    if isinstance(value, OutputFile):
        try:
            present = value.path.is_file()
        except (OSError, ValueError):
            present = False
        return OutputKind.STORED_FILE if present else OutputKind.MISSING_FILE
    if isinstance(value, str):
        if is_http_url(value):
            return OutputKind.URL
        if is_data_uri(value):
            return OutputKind.DATA_URI
        return OutputKind.LOCAL_PATH if _is_absolute_path_text(value) else OutputKind.TEXT
    if isinstance(value, os.PathLike):
        return OutputKind.LOCAL_PATH
    pandas = sys.modules.get("pandas")  # a pd.NA or NaT can only exist once pandas is imported
    if pandas is not None and (value is pandas.NA or value is pandas.NaT):
        return OutputKind.MISSING
    return OutputKind.OTHER
