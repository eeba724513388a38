"""Content-addressed output file store, OutputFile, and localize_output."""

from __future__ import annotations

import base64
import hashlib
import os
import pickle
import threading
from pathlib import Path
from typing import Any

import anyio
import pandas as pd
import pytest

from replibatch._store import filestore, outputs
from replibatch._store.filestore import FileStore, OutputFile, choose_extension, localize_output

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"jfif" * 8
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 16


class FakeFetch:
    """An async fetch serving fixed bytes per URL and counting calls."""

    def __init__(self, files: dict[str, Any]) -> None:
        self.files = files
        self.calls: list[str] = []

    async def __call__(self, url: str) -> Any:
        self.calls.append(url)
        await anyio.sleep(0)  # let other fetches interleave
        result = self.files[url]
        if isinstance(result, Exception):
            raise result
        return result


def stored_files(store: FileStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if p.is_file())


def test_identical_bytes_are_stored_once_under_their_hash(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    first = store.put_bytes(PNG, url="https://x.test/a.png")
    second = store.put_bytes(PNG, url="https://y.test/b.png")
    digest = hashlib.sha256(PNG).hexdigest()
    assert first.path == tmp_path / "files" / digest[:2] / f"{digest}.png"
    assert second.path == first.path
    assert stored_files(store) == [first.path]
    assert first.path.read_bytes() == PNG
    assert (first.url, second.url) == ("https://x.test/a.png", "https://y.test/b.png")
    assert store.relative(first) == f"files/{digest[:2]}/{digest}.png"


@pytest.mark.parametrize(
    ("data", "url", "content_type", "ext"),
    [
        (b"x", "https://replicate.delivery/abc/out-0.WEBP?sig=1", None, ".webp"),
        (b"x", "https://x.test/file.jpeg", None, ".jpg"),
        (b"x", "https://x.test/no-extension", "audio/mpeg", ".mp3"),
        (b"x", "https://x.test/no-extension", "image/png; charset=binary", ".png"),
        (PNG, "https://x.test/noext", None, ".png"),
        (JPEG, None, None, ".jpg"),
        (WAV, None, None, ".wav"),
        (b"\x00\x00\x00\x18ftypmp42", None, None, ".mp4"),
        (b"plain bytes", None, None, ".bin"),
        (b"x", "https://x.test/evil.<script>", None, ".bin"),
    ],
)
def test_extension_from_url_then_content_type_then_magic(
    data: bytes, url: str | None, content_type: str | None, ext: str
) -> None:
    assert choose_extension(data, url, content_type) == ext


def test_write_is_atomic_temp_file_then_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path)
    seen: list[tuple[bool, bytes]] = []
    real_replace = os.replace

    def observing_replace(src: str, dst: Path) -> None:
        # Until the rename, the final name does not exist and the temp file is already complete.
        seen.append((Path(dst).exists(), Path(src).read_bytes()))
        real_replace(src, dst)

    monkeypatch.setattr(filestore.os, "replace", observing_replace)
    file = store.put_bytes(JPEG)
    assert seen == [(False, JPEG)]
    assert stored_files(store) == [file.path]


def test_failed_write_leaves_neither_file_nor_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path)

    def failing_replace(src: str, dst: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(filestore.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        store.put_bytes(PNG)
    assert stored_files(store) == []


def test_concurrent_writers_of_the_same_content_end_with_one_whole_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    data = os.urandom(256 * 1024)
    results: list[OutputFile] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.put_bytes(data))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({str(r) for r in results}) == 1
    assert stored_files(store) == [results[0].path]
    assert results[0].path.read_bytes() == data


def test_localize_output_replaces_urls_and_data_uris_anywhere(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    fetch = FakeFetch({"https://x.test/a.png": PNG, "https://x.test/b": (WAV, "audio/wav")})
    data_uri = "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
    output = {
        "images": ["https://x.test/a.png", "https://x.test/a.png", data_uri],
        "audio": "https://x.test/b",
        "caption": "see https://x.test/a.png for details",
        "note": "data: 3 rows were dropped",
        "score": 0.5,
    }
    result = anyio.run(store.localize_output, output, fetch)
    assert sorted(fetch.calls) == ["https://x.test/a.png", "https://x.test/b"]  # once per URL
    first, again, inline = result["images"]
    assert isinstance(first, OutputFile) and first.path.read_bytes() == PNG
    assert first.url == "https://x.test/a.png" and again == first
    assert inline.path.suffix == ".jpg" and inline.path.read_bytes() == JPEG and inline.url is None
    assert result["audio"].path.suffix == ".wav" and result["audio"].url == "https://x.test/b"
    assert result["caption"] == output["caption"] and not isinstance(result["caption"], OutputFile)
    assert result["note"] == output["note"] and result["score"] == 0.5
    assert output["audio"] == "https://x.test/b"  # the input is not modified


def test_localize_output_single_url_and_percent_encoded_data_uri(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    fetch = FakeFetch({"https://x.test/out.mp4": b"\x00\x00\x00\x18ftypisom"})
    video = anyio.run(localize_output, "https://x.test/out.mp4", fetch, store)
    assert isinstance(video, OutputFile) and video.path.suffix == ".mp4"
    text = anyio.run(localize_output, "data:text/plain,hello%20world", fetch, store)
    assert text.path.read_bytes() == b"hello world" and text.path.suffix == ".txt"


def test_localize_output_without_files_returns_output_unchanged(tmp_path: Path) -> None:
    fetch = FakeFetch({})
    output = ["Here", " is", " https://", "a haiku"]
    assert anyio.run(localize_output, output, fetch, FileStore(tmp_path)) is output
    assert fetch.calls == []


def test_localize_output_raises_the_fetch_error_itself(tmp_path: Path) -> None:
    fetch = FakeFetch(
        {"https://x.test/1.png": PNG, "https://x.test/2.png": ConnectionError("gone")}
    )
    with pytest.raises(ConnectionError, match="gone"):
        anyio.run(
            localize_output,
            ["https://x.test/1.png", "https://x.test/2.png"],
            fetch,
            FileStore(tmp_path),
        )


def test_malformed_base64_data_uri_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="base64"):
        anyio.run(localize_output, "data:image/png;base64,@@@", FakeFetch({}), FileStore(tmp_path))


def test_output_file_is_a_plain_string_to_pandas_and_parquet(tmp_path: Path) -> None:
    file = FileStore(tmp_path).put_bytes(PNG, url="https://x.test/a.png")
    assert file == str(file.path) and isinstance(file, str)
    assert pickle.loads(pickle.dumps(file)).url == "https://x.test/a.png"
    frame = pd.DataFrame({"output": [file, "text"]})
    frame.to_parquet(tmp_path / "out.parquet")
    assert pd.read_parquet(tmp_path / "out.parquet")["output"].tolist() == [str(file), "text"]
    frame.to_csv(tmp_path / "out.csv", index=False)
    assert pd.read_csv(tmp_path / "out.csv")["output"].tolist() == [str(file), "text"]


def test_repr_html_inlines_media_and_escapes(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    image = store.put_bytes(PNG, url='https://x.test/a.png?"><script>alert(1)</script>')
    html = image._repr_html_()
    assert html.startswith("<img ") and base64.b64encode(PNG).decode() in html
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert store.put_bytes(WAV)._repr_html_().startswith("<audio controls")
    other = store.put_bytes(b"just bytes")._repr_html_()
    assert other.startswith('<a href="file://') and other.endswith(".bin</a>")


def test_large_media_is_linked_not_inlined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs, "INLINE_LIMIT_BYTES", 10)  # OutputFile lives in outputs
    html = FileStore(tmp_path).put_bytes(PNG)._repr_html_()
    assert html.startswith("<a href=") and "base64" not in html


def test_resolve_refuses_references_outside_the_store(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    for bad in ["../secret", "/etc/passwd", "files/ab/../../x", "files/ab/" + "a" * 64 + ".png/.."]:
        with pytest.raises(ValueError):
            store.resolve(bad)
    with pytest.raises(ValueError):
        store.relative(tmp_path / "elsewhere.png")


def test_prune_keeps_referenced_and_recent_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    kept = store.put_bytes(PNG)
    old = store.put_bytes(JPEG)
    recent = store.put_bytes(WAV)
    for file in (kept, old):
        os.utime(file.path, (1_000_000, 1_000_000))
    assert store.prune({store.relative(kept)}, grace_seconds=3600) == 1
    assert stored_files(store) == sorted([kept.path, recent.path])
    assert store.usage() == (2, len(PNG) + len(WAV))
