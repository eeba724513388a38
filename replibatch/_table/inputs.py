"""File inputs: local files, bytes and images given as model inputs.

The file rule: a plain ``str`` is text. It is read from disk and sent as a file only where the
model's schema says the input is a file (``format: uri``, see ``schema.shape_input``) or where the
user opted in (``files=[...]`` / ``--files``), and then only when it names an existing local file
(`path_file_input`). So a prompt column that happens to hold ``~/.ssh/id_rsa`` is sent as text.
``pathlib.Path`` objects, bytes, binary file objects and PIL images are always files
(`as_file_input`; a missing Path is an error).

`path_file_input` accepts a string when it

- is a single line without leading/trailing whitespace and shorter than 4096 characters,
- is not a URL or data URI (anything with ``scheme://`` or starting ``data:`` stays a string),
- looks like a path: contains a path separator (``/``, or ``\\`` on Windows) or is a bare file
  name with an extension (``cat.png``: no spaces, a dot followed by 1-10 letters/digits), and
- names an existing regular file (``~`` is expanded).

Files are identified by the SHA-256 of their bytes; a path's bytes are read when needed rather
than held in memory, so a frame of many large files stays small.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import mimetypes
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replibatch._store.filestore import OutputFile
from replibatch._table.filetypes import sniff
from replibatch.errors import ConfigurationError

__all__ = [
    "SMALL_FILE_BYTES",
    "FileInput",
    "as_file_input",
    "content_hash",
    "data_uri",
    "is_uri",
    "map_files",
    "path_file_input",
]

SMALL_FILE_BYTES = 256 * 1024
"""Files smaller than this are sent inline as data URIs; larger ones are uploaded."""

_MAX_PATH_CHARS = 4096
_CHUNK = 1 << 20
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^data:", re.IGNORECASE)
_BARE_FILENAME_RE = re.compile(r"^[^\s/\\]+\.[A-Za-z0-9]{1,10}$")
_SEPARATORS = ("/", "\\") if os.sep == "\\" else ("/",)

@dataclass(frozen=True)
class FileInput:
    """A file given as a model input, identified by the SHA-256 of its bytes.

    Either `path` (read on demand) or the bytes themselves are held. Equality and hashing use
    the content identity (sha256, filename, content type), never the bytes.
    """

    filename: str
    content_type: str
    sha256: str
    size: int
    path: Path | None = field(default=None, compare=False)
    _bytes: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def data(self) -> bytes:
        """The file's bytes (read from `path` when not held).

        Raises ConfigurationError when the file changed or vanished since it was hashed.
        """
        if self._bytes is not None:
            return self._bytes
        assert self.path is not None
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ConfigurationError(f"cannot read input file {str(self.path)!r}: {exc}") from exc
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise ConfigurationError(f"input file {str(self.path)!r} changed while the run was planned")
        return data

    @classmethod
    def from_bytes(
        cls, data: bytes, *, filename: str | None = None, content_type: str | None = None
    ) -> FileInput:
        """A file input holding `data`; the type is guessed from the name or the bytes."""
        data = bytes(data)
        sniffed_type, extension = _sniff(data)
        if content_type is None:
            guessed = mimetypes.guess_type(filename)[0] if filename else None
            content_type = guessed or sniffed_type
        if not filename:
            if content_type != sniffed_type:
                extension = mimetypes.guess_extension(content_type) or ".bin"
            filename = "input" + extension
        return cls(filename, content_type, hashlib.sha256(data).hexdigest(), len(data), None, data)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> FileInput:
        """A file input for the regular file at `path` (hashed now, read when sent).

        Raises ConfigurationError when `path` is not a readable regular file.
        """
        resolved = Path(path).expanduser()
        try:
            stat = resolved.stat()
            resolved = resolved.resolve()
        except OSError as exc:
            raise ConfigurationError(f"input file {str(path)!r} cannot be read: {exc}") from exc
        if not resolved.is_file():
            raise ConfigurationError(f"input file {str(path)!r} is not a regular file")
        digest, head = _hash_file(str(resolved), stat.st_mtime_ns, stat.st_size, stat.st_ino)
        content_type = mimetypes.guess_type(resolved.name)[0] or _sniff(head)[0]
        return cls(resolved.name, content_type, digest, stat.st_size, resolved, None)


def as_file_input(value: Any) -> FileInput | None:
    """`value` as a FileInput when it is a file (see the module docstring), else None.

    Recognised: FileInput, pathlib.Path, bytes / bytearray / memoryview, a binary file object
    (read once, from its current position), a PIL image (PNG), an `OutputFile` of the store (an
    earlier run's output, chained into another model). A plain string is never a file
    here (see `path_file_input`). Raises ConfigurationError for a Path that is not a readable
    file, or a file object that is not binary.
    """
    if isinstance(value, FileInput):
        return value
    if isinstance(value, OutputFile):
        return FileInput.from_path(value)  # a file in our store (an earlier run's output)
    if isinstance(value, str):
        return None
    if isinstance(value, os.PathLike):
        return FileInput.from_path(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return FileInput.from_bytes(bytes(value))
    if _is_pil_image(value):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return FileInput.from_bytes(buffer.getvalue(), filename="image.png", content_type="image/png")
    if isinstance(value, io.IOBase) or (hasattr(value, "read") and hasattr(value, "seek")):
        if isinstance(value, io.TextIOBase):
            raise ConfigurationError(
                f"file object {_describe(value)} is open in text mode; open it with 'rb'"
            )
        data = value.read()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ConfigurationError(
                f"file object {_describe(value)} returned {type(data).__name__}, not bytes"
            )
        name = getattr(value, "name", None)
        filename = Path(name).name if isinstance(name, str) else None
        return FileInput.from_bytes(bytes(data), filename=filename or None)
    return None


def path_file_input(text: str) -> FileInput | None:
    """The FileInput for a string that names an existing local file (see the module docstring
    for what looks like a path), else None. Only called where a file is meant.

    Raises ConfigurationError when the file exists but cannot be read.
    """
    return FileInput.from_path(text) if _looks_like_existing_file(text) else None


def data_uri(file: FileInput) -> str:
    """The file as a ``data:<type>;base64,...`` URI (meant for files under SMALL_FILE_BYTES)."""
    return f"data:{file.content_type};base64,{base64.b64encode(file.data).decode('ascii')}"


def content_hash(file: FileInput) -> str:
    """The file's content identity, ``sha256:<hex>`` (what cache keys use in its place)."""
    return f"sha256:{file.sha256}"


def map_files(value: Any, replace: Callable[[FileInput], Any]) -> Any:
    """`value` with every FileInput (also inside lists, tuples and dicts) replaced by `replace(f)`.

    Used to turn a job's input into what is sent (URLs, data URIs) or keyed (content hashes).
    """
    if isinstance(value, FileInput):
        return replace(value)
    if isinstance(value, dict):
        return {key: map_files(item, replace) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [map_files(item, replace) for item in value]
    return value


def is_uri(text: str) -> bool:
    """True when `text` starts like a URL (``scheme://``) or a ``data:`` URI: never a local file."""
    return _URL_RE.match(text) is not None


def _looks_like_existing_file(text: str) -> bool:
    if (
        not text
        or len(text) >= _MAX_PATH_CHARS
        or text != text.strip()
        or "\n" in text
        or "\r" in text
        or "\x00" in text
        or is_uri(text)
    ):
        return False
    if not (any(sep in text for sep in _SEPARATORS) or _BARE_FILENAME_RE.match(text)):
        return False
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError):
        return False


@functools.lru_cache(maxsize=4096)
def _hash_file(path: str, mtime_ns: int, size: int, inode: int) -> tuple[str, bytes]:
    # Keyed by mtime/size/inode so a frame that repeats one file reads it once, and an edited
    # file is hashed again.
    digest = hashlib.sha256()
    head = b""
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                if not head:
                    head = chunk[:64]
                digest.update(chunk)
    except OSError as exc:
        raise ConfigurationError(f"input file {path!r} cannot be read: {exc}") from exc
    return digest.hexdigest(), head


def _sniff(data: bytes) -> tuple[str, str]:
    return sniff(data) or ("application/octet-stream", ".bin")


def _is_pil_image(value: Any) -> bool:
    # Only look when PIL is already imported: an image object implies it is.
    pil_image = sys.modules.get("PIL.Image")
    return pil_image is not None and isinstance(value, pil_image.Image)


def _describe(value: Any) -> str:
    name = getattr(value, "name", None)
    return f"{type(value).__name__} {name!r}" if isinstance(name, str) else type(value).__name__
