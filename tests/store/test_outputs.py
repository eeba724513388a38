"""`output_kind`: the one decision "is this output a stored file, a URL, missing or text"."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from replibatch._engine.download import DownloadError, check_output_url
from replibatch._store.filestore import FileStore
from replibatch._store.outfiles import image_paths
from replibatch._store.outputs import OutputFile, OutputKind, output_kind
from replibatch._view.media import is_missing, is_url, local_path

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, OutputKind.MISSING),
        (math.nan, OutputKind.MISSING),
        (np.float64("nan"), OutputKind.MISSING),
        (pd.NA, OutputKind.MISSING),
        (pd.NaT, OutputKind.MISSING),
        (1.5, OutputKind.OTHER),
        (3, OutputKind.OTHER),
        (["https://x.test/a.png"], OutputKind.OTHER),  # a list: its items are classified
        ("https://replicate.delivery/x/out.png", OutputKind.URL),
        ("http://localhost:8787/files/a", OutputKind.URL),
        ("https://x.test/a.png and more text", OutputKind.TEXT),  # starts with a URL: still text
        (" https://x.test/a.png", OutputKind.TEXT),
        ("https://", OutputKind.TEXT),  # no host
        ("data:image/png;base64,iVBORw0KGgo=", OutputKind.DATA_URI),
        ("data: not a uri", OutputKind.TEXT),
        ("/home/me/.ssh/id_rsa", OutputKind.LOCAL_PATH),
        ("C:\\Users\\me\\a.png", OutputKind.LOCAL_PATH),
        ("/a/path\nand a second line", OutputKind.TEXT),
        (Path("relative.png"), OutputKind.LOCAL_PATH),
        ("a cat on a mat", OutputKind.TEXT),
    ],
)
def test_output_kind_of_plain_values(value: object, kind: OutputKind) -> None:
    assert output_kind(value) is kind


def test_only_a_present_output_file_of_the_store_is_a_stored_file(tmp_path: Path) -> None:
    stored = FileStore(tmp_path).put_bytes(PNG, url="https://x.test/a.png")
    assert output_kind(stored) is OutputKind.STORED_FILE
    assert output_kind(str(stored)) is OutputKind.LOCAL_PATH  # the same path as plain text
    stored.path.unlink()
    assert output_kind(stored) is OutputKind.MISSING_FILE
    assert output_kind(OutputFile(tmp_path / "never-written.png")) is OutputKind.MISSING_FILE


def test_views_downloads_and_the_judge_all_follow_it(tmp_path: Path) -> None:
    stored = FileStore(tmp_path).put_bytes(PNG)
    plain = str(stored)
    # Views embed only files of our store; a path written as text is never read.
    assert local_path(stored) == stored.path and local_path(plain) is None
    assert is_url("https://x.test/a.png") and not is_url("https://x.test/a.png is the answer")
    assert is_missing(pd.NA) and is_missing(None) and not is_missing([]) and not is_missing("")
    # The judge (which uploads what it finds) takes only stored images; diff, which only hashes
    # the bytes here, also takes plain absolute paths (a frame read back from Parquet).
    found = [stored, plain, "https://x.test/a.png", "text"]
    assert image_paths(found) == [stored.path]
    assert image_paths(found, local_paths=True) == [stored.path, stored.path]
    # The downloader refuses what is not exactly one http(s) URL.
    check_output_url("https://replicate.delivery/a.png", "https://api.replicate.com/v1")
    for url in ("ftp://x.test/a.png", "https://x.test/a b.png", "HTTPS://"):
        with pytest.raises(DownloadError):
            check_output_url(url, "https://api.replicate.com/v1")
