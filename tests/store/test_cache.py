"""The result cache: round trips, statuses, pending markers, robustness, management, sharing."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import sqlite3
import stat
import tempfile
import zlib
from datetime import timedelta
from pathlib import Path

import pytest

from replibatch._store.cache import (
    CACHE_DIR_ENV,
    CacheEntry,
    CacheWarning,
    ResultCache,
    cache_info,
    clear_cache,
    default_cache_dir,
    open_cache,
)
from replibatch._store.keys import cache_key
from replibatch.errors import ConfigurationError

VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 40
FAKE_TOKEN = "r8_test_NotARealToken0123456789abcdef"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def isolated_default_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "default-cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(directory))
    return directory


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(tmp_path: Path, clock: FakeClock) -> ResultCache:
    return ResultCache(tmp_path / "cache", clock=clock)


def make_entry(
    prompt: str, *, status: str = "succeeded", model: str = "acme/llm", output: object = None
) -> CacheEntry:
    record = {
        "id": f"id-{prompt}",
        "version": VERSION,
        "input": {"prompt": prompt},
        "output": ["Hello", " ", prompt],
        "status": status,
        "error": None if status == "succeeded" else "boom",
        "metrics": {"predict_time": 1.25},
        "urls": {"get": f"https://api.replicate.com/v1/predictions/id-{prompt}"},
    }
    row = {
        "output": f"Hello {prompt}" if output is None else output,
        "status": status,
        "error": None if status == "succeeded" else "boom",
        "prediction_id": record["id"],
        "predict_s": 1.25,
        "cost_usd": 0.001,
    }
    return CacheEntry(
        model=model, version=VERSION, input={"prompt": prompt}, record=record, row=row
    )


def key_for(prompt: str, sample: int = 0) -> str:
    return cache_key(VERSION, {"prompt": prompt}, sample)


def raw_sql(cache: ResultCache, query: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(cache.directory / "cache.db") as con:
        return con.execute(query, params).fetchall()


# -- round trips -------------------------------------------------------------------------------


def test_put_get_round_trip(cache: ResultCache, clock: FakeClock) -> None:
    entry = make_entry("llama")
    cache.put(key_for("llama"), entry)
    got = cache.get(key_for("llama"))
    assert got is not None
    assert got.row == entry.row and got.record == entry.record
    assert (got.model, got.version, got.input, got.sample) == (
        "acme/llm",
        VERSION,
        {"prompt": "llama"},
        0,
    )
    assert got.status == "succeeded" and got.stored_at == clock.now
    assert got.to_dict()["key_format"] == "rb1"
    assert cache.get(key_for("llama", sample=1)) is None
    assert key_for("llama") in cache and key_for("other") not in cache


def test_stored_input_has_file_inputs_as_hashes_and_nan_becomes_null(cache: ResultCache) -> None:
    class File:
        sha256 = "ab" * 32

    entry = make_entry("x")
    entry.input = {"image": File(), "scale": 2.0}
    entry.row["cost_usd"] = float("nan")
    cache.put(key_for("x"), entry)
    got = cache.get(key_for("x"))
    assert got is not None
    assert got.input == {"image": "sha256:" + "ab" * 32, "scale": 2}
    assert got.row["cost_usd"] is None


def test_only_succeeded_is_served_by_default(cache: ResultCache) -> None:
    cache.put(key_for("ok"), make_entry("ok"))
    cache.put(key_for("bad"), make_entry("bad", status="failed"))
    keys = [key_for("ok"), key_for("bad"), key_for("missing")]
    assert list(cache.get_many(keys)) == [key_for("ok")]
    assert cache.get(key_for("bad")) is None
    assert cache.get(key_for("bad"), statuses=("failed", "canceled")).status == "failed"
    assert set(cache.get_many(keys, statuses=None)) == {key_for("ok"), key_for("bad")}


def test_get_many_reads_thousands_of_keys_across_batches(cache: ResultCache) -> None:
    prompts = [f"p{i}" for i in range(2500)]
    cache.put_many({key_for(p): make_entry(p) for p in prompts})
    wanted = [key_for(p) for p in prompts] + [key_for("absent")] + [key_for("p1")]
    found = cache.get_many(wanted)
    assert len(found) == 2500
    assert found[key_for("p1234")].row["output"] == "Hello p1234"


def test_put_replaces_an_entry(cache: ResultCache) -> None:
    cache.put(key_for("a"), make_entry("a", status="failed"))
    cache.put(key_for("a"), make_entry("a"))
    assert cache.get(key_for("a")).status == "succeeded"
    assert cache.info().entries == 1


def test_large_entries_round_trip(cache: ResultCache) -> None:
    long_text = "word " * 40_000  # beyond diskcache's in-database size: kept in its own file
    cache.put(key_for("long"), make_entry("long", output=long_text))
    assert cache.get(key_for("long")).row["output"] == long_text


def test_non_ascii_and_lone_surrogates_round_trip(cache: ResultCache) -> None:
    text = "日本語 🦙 \ud800 end"
    cache.put(key_for("u"), make_entry("u", output=text))
    assert cache.get(key_for("u")).row["output"] == text


def test_values_that_are_not_json_are_refused(cache: ResultCache) -> None:
    entry = make_entry("obj")
    entry.row["client"] = object()
    with pytest.raises(TypeError):
        cache.put(key_for("obj"), entry)
    assert cache.get(key_for("obj"), statuses=None) is None


def test_pending_marker_keys_are_not_result_keys(cache: ResultCache) -> None:
    with pytest.raises(ValueError):
        cache.get("pending:" + key_for("a"))
    with pytest.raises(ValueError):
        cache.put("pending:x", make_entry("a"))


# -- output files ------------------------------------------------------------------------------


def test_output_files_are_stored_relative_and_read_back_absolute(
    cache: ResultCache, tmp_path: Path
) -> None:
    image = cache.files.put_bytes(PNG, url="https://replicate.delivery/x/out-0.png")
    cache.put(key_for("img"), make_entry("img", output=[image, "caption"]))
    (header,) = [v.partition(b"\n")[0] for (v,) in raw_sql(cache, "SELECT value FROM Cache")]
    assert str(cache.directory).encode() not in header
    assert cache.files.relative(image).encode() in header

    moved = tmp_path / "moved"
    shutil.move(str(cache.directory), moved)
    output = ResultCache(moved).get(key_for("img")).row["output"]
    assert output[1] == "caption"
    assert output[0].path == moved / cache.files.relative(image)
    assert output[0].path.read_bytes() == PNG
    assert output[0].url == "https://replicate.delivery/x/out-0.png"


def test_entry_whose_output_file_vanished_is_a_miss(cache: ResultCache) -> None:
    image = cache.files.put_bytes(PNG)
    cache.put(key_for("img"), make_entry("img", output=image))
    image.path.unlink()
    with pytest.warns(CacheWarning, match="missing"):
        assert cache.get(key_for("img")) is None


def test_output_file_from_another_store_is_refused(cache: ResultCache, tmp_path: Path) -> None:
    other = ResultCache(tmp_path / "other").files.put_bytes(PNG)
    with pytest.raises(ValueError):
        cache.put(key_for("img"), make_entry("img", output=other))


# -- pending markers ---------------------------------------------------------------------------


def test_pending_markers(cache: ResultCache, clock: FakeClock) -> None:
    key = key_for("slow")
    assert cache.pending(key) is None
    cache.mark_pending(key, "pred123", {"model": "acme/llm", "version": VERSION})
    assert cache.pending(key) == {
        "prediction_id": "pred123",
        "meta": {"model": "acme/llm", "version": VERSION},
        "marked_at": clock.now,
    }
    assert cache.get(key, statuses=None) is None  # never served as a result
    assert cache.info().pending == 1 and cache.info().entries == 0
    assert cache.pending_many([key, key_for("other")]) == {key: cache.pending(key)}
    assert cache.clear_pending(key) is True
    assert cache.pending(key) is None and cache.clear_pending(key) is False


def test_storing_a_result_drops_its_pending_marker(cache: ResultCache) -> None:
    cache.mark_pending(key_for("a"), "p1")
    cache.mark_pending(key_for("b"), "p2")
    cache.put(key_for("a"), make_entry("a"))
    assert cache.pending(key_for("a")) is None
    assert cache.pending(key_for("b"))["prediction_id"] == "p2"


# -- robustness --------------------------------------------------------------------------------


def test_garbage_in_the_database_is_a_miss_with_one_warning(cache: ResultCache) -> None:
    for prompt in ("a", "b", "c"):
        cache.put(key_for(prompt), make_entry(prompt))
    raw_sql(cache, "UPDATE Cache SET value = ? WHERE key = ?", (b"\xff\x00garbage", key_for("a")))
    raw_sql(cache, "UPDATE Cache SET value = ? WHERE key = ?", ("not json\n", key_for("b")))
    with pytest.warns(CacheWarning) as caught:
        found = cache.get_many([key_for("a"), key_for("b"), key_for("c")])
    assert list(found) == [key_for("c")]
    assert len(caught) == 1 and "2 unreadable cache entries" in str(caught[0].message)
    with pytest.warns(CacheWarning):
        assert cache.get(key_for("a")) is None
    cache.put(key_for("a"), make_entry("a"))  # the next run simply overwrites it
    assert cache.get(key_for("a")) is not None


def test_a_pickle_in_the_database_is_never_unpickled(cache: ResultCache, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"

    class Exploit:
        def __reduce__(self) -> tuple:
            return (open, (str(marker), "w"))

    cache.put(key_for("a"), make_entry("a"))
    raw_sql(
        cache,
        "UPDATE Cache SET mode = 4, value = ? WHERE key = ?",  # 4: diskcache's pickle mode
        (pickle.dumps(Exploit()), key_for("a")),
    )
    with pytest.warns(CacheWarning):
        assert cache.get(key_for("a")) is None
    assert not marker.exists()


def test_corrupted_value_file_is_a_miss(cache: ResultCache) -> None:
    cache.put(key_for("long"), make_entry("long", output="x" * 100_000))
    ((filename,),) = raw_sql(cache, "SELECT filename FROM Cache WHERE key = ?", (key_for("long"),))
    (cache.directory / filename).write_bytes(b"\x00\x01 truncated")
    with pytest.warns(CacheWarning):
        assert cache.get(key_for("long")) is None
    (cache.directory / filename).unlink()
    with pytest.warns(CacheWarning):
        assert cache.get(key_for("long")) is None


def test_corrupted_record_raises_only_when_read(cache: ResultCache) -> None:
    cache.put(key_for("a"), make_entry("a"))
    ((value,),) = raw_sql(cache, "SELECT value FROM Cache")
    head = value.partition(b"\n")[0]
    raw_sql(cache, "UPDATE Cache SET value = ?", (head + b"\nnot zlib",))
    entry = cache.get(key_for("a"))
    assert entry is not None and entry.row["output"] == "Hello a"
    with pytest.raises(ValueError, match="corrupted"):
        _ = entry.record


def test_unusable_directory_is_one_clear_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigurationError) as raised:
        ResultCache(blocker / "cache")
    assert str(blocker / "cache") in str(raised.value) and CACHE_DIR_ENV in str(raised.value)
    with pytest.raises(ConfigurationError):
        open_cache(blocker)


def test_read_only_directory_is_a_configuration_error(tmp_path: Path, monkeypatch) -> None:
    directory = tmp_path / "ro"
    directory.mkdir(mode=0o500)
    if os.geteuid() == 0:
        # root writes anyway; make the write probe fail the way it does for everyone else
        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "TemporaryFile", denied)
    try:
        with pytest.raises(ConfigurationError, match=CACHE_DIR_ENV) as raised:
            ResultCache(directory)
        assert "Permission denied" in str(raised.value) and str(directory) in str(raised.value)
    finally:
        directory.chmod(0o700)


def test_new_directory_is_private_to_the_user(tmp_path: Path) -> None:
    old_umask = os.umask(0o002)  # a permissive umask must not leak into the cache's mode
    try:
        cache = ResultCache(tmp_path / "deep" / "new-cache")
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(cache.directory.stat().st_mode) == 0o700


def test_token_never_reaches_the_cache(cache: ResultCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", FAKE_TOKEN)
    entry = make_entry("secret")
    # A careless caller hands over more than the prediction JSON.
    entry.record["api_token"] = FAKE_TOKEN
    entry.record["headers"] = {"Authorization": f"Bearer {FAKE_TOKEN}"}
    cache.put(key_for("secret"), entry)
    cache.mark_pending(key_for("other"), "p1", {"model": "acme/llm", "Authorization": FAKE_TOKEN})
    cache.files.put_bytes(PNG)
    cache.close()

    haystacks = [p.read_bytes() for p in cache.directory.rglob("*") if p.is_file()]
    for (value,) in raw_sql(cache, "SELECT value FROM Cache"):
        head, _, packed = bytes(value).partition(b"\n")
        haystacks += [head, zlib.decompress(packed) if packed else b""]
    assert haystacks and not any(FAKE_TOKEN.encode() in h for h in haystacks)
    assert cache.get(key_for("secret")).record["id"] == "id-secret"


# -- management --------------------------------------------------------------------------------


def test_info_counts_entries_by_model_pending_and_bytes(cache: ResultCache) -> None:
    image = cache.files.put_bytes(PNG)
    cache.put(key_for("a"), make_entry("a", model="acme/llm"))
    cache.put(key_for("b"), make_entry("b", model="acme/llm", status="failed"))
    cache.put(key_for("c"), make_entry("c", model="acme/img", output=image))
    cache.mark_pending(key_for("d"), "p", {"model": "acme/img"})
    info = cache.info()
    assert (info.entries, info.pending) == (3, 1)
    assert info.entries_by_model == {"acme/llm": 2, "acme/img": 1}
    assert (info.files, info.file_bytes) == (1, len(PNG))
    db_size = (cache.directory / "cache.db").stat().st_size
    assert info.bytes >= db_size + len(PNG)
    assert "3 entries" in str(info)


def test_clear_by_model(cache: ResultCache) -> None:
    old_image = cache.files.put_bytes(PNG)
    cache.put(key_for("a"), make_entry("a", model="acme/llm"))
    cache.put(key_for("b"), make_entry("b", model="acme/img", output=old_image))
    cache.mark_pending(key_for("c"), "p", {"model": "acme/img"})
    os.utime(old_image.path, (1_000_000, 1_000_000))  # untouched for long: prunable
    assert cache.clear(model="acme/img") == 1
    assert cache.info().entries_by_model == {"acme/llm": 1}
    assert cache.pending(key_for("c")) is None
    assert not old_image.path.exists()  # no entry references it any more
    assert cache.get(key_for("a")) is not None


def test_clear_older_than(cache: ResultCache, clock: FakeClock) -> None:
    cache.put(key_for("old"), make_entry("old"))
    cache.put(key_for("new"), make_entry("new"))
    now = raw_sql(cache, "SELECT max(store_time) FROM Cache")[0][0]
    raw_sql(cache, "UPDATE Cache SET store_time = ? WHERE key = ?", (now - 7200, key_for("old")))
    clock.now = now + 1
    assert cache.clear(older_than=timedelta(hours=1)) == 1
    assert cache.get(key_for("old")) is None and cache.get(key_for("new")) is not None
    assert cache.clear(older_than=3600) == 0
    clock.now = now + 7200
    assert cache.clear(model="acme/llm", older_than=3600) == 1
    with pytest.raises(ValueError):
        cache.clear(older_than=-1)


def test_clear_everything_removes_files_too(cache: ResultCache) -> None:
    image = cache.files.put_bytes(PNG)
    cache.put(key_for("a"), make_entry("a", output=image))
    cache.put(key_for("b"), make_entry("b"))
    cache.mark_pending(key_for("c"), "p")
    assert cache.clear() == 2
    info = cache.info()
    assert (info.entries, info.pending, info.files) == (0, 0, 0)


# -- opening -----------------------------------------------------------------------------------


def test_open_cache_options(tmp_path: Path, isolated_default_dir: Path) -> None:
    default = open_cache(True)
    assert default is not None and default.directory == isolated_default_dir
    assert default_cache_dir() == isolated_default_dir
    assert open_cache(True) is default  # shared per directory
    assert open_cache(False) is None and open_cache(None) is None
    assert open_cache(str(tmp_path / "p")).directory == tmp_path / "p"
    assert open_cache(tmp_path / "p") is open_cache(str(tmp_path / "p"))
    assert open_cache(default) is default
    for bad in (1, "", object(), ["dir"]):
        with pytest.raises(ConfigurationError):
            open_cache(bad)  # type: ignore[arg-type]


def test_open_cache_reopens_a_deleted_directory(tmp_path: Path) -> None:
    first = open_cache(tmp_path / "c")
    shutil.rmtree(tmp_path / "c")
    second = open_cache(tmp_path / "c")
    assert second is not first
    second.put(key_for("a"), make_entry("a"))
    assert ResultCache(tmp_path / "c").get(key_for("a")) is not None


def test_module_level_info_and_clear(isolated_default_dir: Path) -> None:
    open_cache(True).put(key_for("a"), make_entry("a"))
    assert cache_info().entries == 1
    assert clear_cache(model="nobody/else") == 0
    assert clear_cache() == 1 and cache_info().entries == 0
    with pytest.raises(ConfigurationError):
        cache_info(False)


# -- sharing between processes -----------------------------------------------------------------


def _write_entries(directory: str, worker: int, count: int) -> None:
    cache = ResultCache(directory)
    for i in range(count):
        key = key_for(f"w{worker}-{i}")
        cache.mark_pending(key, f"pred-{worker}-{i}")
        cache.put(key, make_entry(f"w{worker}-{i}"))


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    directory = str(tmp_path / "shared")
    ResultCache(directory)
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_entries, args=(directory, w, 60)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    cache = ResultCache(directory)
    keys = [key_for(f"w{w}-{i}") for w in range(2) for i in range(60)]
    assert len(cache.get_many(keys)) == 120
    assert cache.info().pending == 0
