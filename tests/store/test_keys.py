"""Cache keys: the documented form, and which inputs must (not) share a key."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import pytest

from replibatch._store.keys import HASH_ALGORITHM, KEY_FORMAT, cache_key, canonical_json, canonical_value

VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"


def test_key_form_is_pinned_to_the_documented_example() -> None:
    # The exact text the module docstring documents, written out by hand.
    canonical = '{"input":{"prompt":"h\\u00e9llo","seed":1},"sample":0,"version":"acme/echo"}'
    expected = "rb1:sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    assert cache_key("acme/echo", {"seed": 1.0, "prompt": "héllo"}) == expected


def test_key_form_with_nested_input_file_and_sample() -> None:
    canonical = (
        '{"input":{"image":"sha256:' + "ab" * 32 + '","opts":{"a":[1,0.5,null,true]},'
        '"temperature":0.1},"sample":2,"version":"' + VERSION + '"}'
    )
    expected = "rb1:sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    key = cache_key(
        VERSION,
        {"temperature": 0.1, "opts": {"a": [1.0, 0.5, None, True]}, "image": FakeFile("ab" * 32)},
        sample=2,
    )
    assert key == expected
    assert re.fullmatch(rf"{KEY_FORMAT}:{HASH_ALGORITHM}:[0-9a-f]{{64}}", key)


def test_canonical_json_sorts_keys_without_whitespace() -> None:
    value = {"b": [1, 2], "a": {"d": None, "c": True}, "é": "ü"}
    assert canonical_json(value) == '{"a":{"c":true,"d":null},"b":[1,2],"\\u00e9":"\\u00fc"}'


@pytest.mark.parametrize(
    "one", [1, 1.0, np.int64(1), np.int32(1), np.float32(1.0), np.float64(1.0), np.uint8(1)]
)
def test_equal_numbers_give_equal_keys(one: object) -> None:
    assert cache_key(VERSION, {"x": one}) == cache_key(VERSION, {"x": 1})
    assert canonical_json([one]) == "[1]"


def test_equal_floats_give_equal_keys_and_different_floats_do_not() -> None:
    assert cache_key(VERSION, {"t": np.float64(0.1)}) == cache_key(VERSION, {"t": 0.1})
    assert cache_key(VERSION, {"t": -0.0}) == cache_key(VERSION, {"t": 0})
    assert cache_key(VERSION, {"t": 0.1}) != cache_key(VERSION, {"t": 0.1 + 1e-16})
    # float32(0.1) is not the double 0.1: it is keyed by the value that would be sent.
    assert canonical_json(np.float32(0.1)) == repr(float(np.float32(0.1)))
    assert cache_key(VERSION, {"t": 2**60}) != cache_key(VERSION, {"t": 2**60 + 1})


def test_booleans_are_not_numbers() -> None:
    assert cache_key(VERSION, {"x": True}) != cache_key(VERSION, {"x": 1})
    assert cache_key(VERSION, {"x": np.bool_(True)}) == cache_key(VERSION, {"x": True})


def test_dict_order_never_matters_at_any_depth() -> None:
    a = {"prompt": "p", "opts": {"x": 1, "y": [{"m": 1, "n": 2}]}}
    b = {"opts": {"y": [{"n": 2, "m": 1}], "x": 1}, "prompt": "p"}
    assert cache_key(VERSION, a) == cache_key(VERSION, b)


def test_list_order_and_nested_values_matter() -> None:
    assert cache_key(VERSION, {"x": [1, 2]}) != cache_key(VERSION, {"x": [2, 1]})
    assert cache_key(VERSION, {"x": {"y": 1}}) != cache_key(VERSION, {"x": {"y": 2}})
    assert cache_key(VERSION, {"x": (1, 2)}) == cache_key(VERSION, {"x": np.array([1, 2])})


def test_version_and_sample_are_part_of_the_key() -> None:
    base = cache_key(VERSION, {"prompt": "p"})
    assert cache_key("f" * 64, {"prompt": "p"}) != base
    assert cache_key("acme/echo", {"prompt": "p"}) != base
    assert cache_key(VERSION, {"prompt": "p"}, sample=1) != base
    assert cache_key(VERSION, {"prompt": "p"}, sample=np.int64(0)) == base


@dataclass(frozen=True)
class FakeFile:
    sha256: str


def test_file_inputs_are_keyed_by_content_hash() -> None:
    inputs = pytest.importorskip("replibatch._table.inputs")
    png = b"\x89PNG\r\n\x1a\n" + b"pixels"
    one = inputs.FileInput.from_bytes(png, filename="a.png")
    same_bytes = inputs.FileInput.from_bytes(png, filename="a.png")
    other = inputs.FileInput.from_bytes(png + b"!", filename="a.png")
    digest = hashlib.sha256(png).hexdigest()
    assert cache_key(VERSION, {"image": one}) == cache_key(VERSION, {"image": same_bytes})
    assert cache_key(VERSION, {"image": one}) == cache_key(VERSION, {"image": f"sha256:{digest}"})
    assert cache_key(VERSION, {"image": one}) != cache_key(VERSION, {"image": other})
    assert canonical_value({"image": [one]}) == {"image": [f"sha256:{digest}"]}


def test_duck_typed_file_input_is_replaced_by_its_hash() -> None:
    assert canonical_value({"f": FakeFile("cd" * 32)}) == {"f": "sha256:" + "cd" * 32}


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), -float("inf"), np.nan, np.float32("inf")]
)
def test_nan_and_infinity_are_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match=r"input\['a'\]\[1\]"):
        cache_key(VERSION, {"a": [0, bad]})


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({1: "x"}, TypeError),  # json.dumps would silently turn 1 into "1"
        ({"x": object()}, TypeError),
        ({"x": b"bytes"}, TypeError),
        ({"x": {1.5, 2.5}}, TypeError),
    ],
)
def test_values_that_are_not_json_are_rejected(value: dict, error: type) -> None:
    with pytest.raises(error):
        cache_key(VERSION, value)


def test_bad_version_or_sample_is_rejected() -> None:
    with pytest.raises(ValueError):
        cache_key("", {})
    with pytest.raises(TypeError):
        cache_key(None, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        cache_key(VERSION, {}, sample=-1)
    with pytest.raises(TypeError):
        cache_key(VERSION, {}, sample=True)
    with pytest.raises(TypeError):
        cache_key(VERSION, {}, sample=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cache_key(VERSION, ["not", "a", "mapping"])  # type: ignore[arg-type]
