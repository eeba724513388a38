"""Atomic file replacement: the one way replibatch writes a file that readers may see.

A fresh file beside the target is written, then renamed over it, so a reader (or a crash) sees
the old file or the whole new one, never half of it. Used for stored output files, results files
(``replibatch run --out``) and HTML reports.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["TEMP_PREFIX", "atomic_write", "atomic_write_bytes"]

# Names of files being written start with this; the file store's listing skips them, so a prune
# never counts (or deletes) a file half-way through its write as a stored output.
TEMP_PREFIX = ".tmp-"


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[Path], Any],
    *,
    private: bool = False,
    durable: bool = False,
) -> Path:
    """Call ``write(tmp)`` on a fresh file beside `path`, then rename it to `path`; return `path`.

    The temporary file is created here (exclusively, so a name clash fails rather than overwrites)
    with the usual permissions (the umask), or owner-only (0600) when `private`. `durable` fsyncs
    the finished file before the rename, so the rename never publishes content still in the page
    cache only (the store's files are referenced from entries that outlive a power cut).

    Raises OSError when the directory is not writable, `write` fails or the rename fails; any
    exception from `write` propagates. The temporary file is removed on every failure.
    """
    target = Path(path)
    tmp = target.with_name(f"{TEMP_PREFIX}{target.name}.{os.getpid()}.{secrets.token_hex(4)}")
    mode = 0o600 if private else 0o666  # 0o666 & ~umask: what open() gives a new file
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
        write(tmp)
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, private: bool = False) -> Path:
    """Write `data` to `path` atomically and durably (see `atomic_write`), creating the parent
    directory if needed. Raises OSError when it cannot be written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(target, lambda tmp: tmp.write_bytes(data), private=private, durable=True)
