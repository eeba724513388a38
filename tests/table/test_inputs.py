import base64
import hashlib
import io
import os

import pytest
from PIL import Image

from replibatch._table.inputs import (
    SMALL_FILE_BYTES,
    FileInput,
    as_file_input,
    content_hash,
    data_uri,
    map_files,
    path_file_input,
)
from replibatch.errors import ConfigurationError

PNG_HEADER = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_path_object_is_hashed_and_read_on_demand(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff" + b"x" * 100)
    file = as_file_input(path)
    assert file.filename == "photo.jpg"
    assert file.content_type == "image/jpeg"
    assert file.size == 103
    assert file.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert file.data == path.read_bytes()
    assert content_hash(file) == "sha256:" + file.sha256


def test_existing_path_string_is_a_file(tmp_path):
    path = tmp_path / "sub" / "in.wav"
    path.parent.mkdir()
    path.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    assert as_file_input(str(path)) is None  # a plain string is text unless a file is meant
    file = path_file_input(str(path))
    assert file is not None and file.filename == "in.wav" and file.data == path.read_bytes()


def test_bare_filename_with_extension_in_cwd_is_a_file(in_tmp):
    (in_tmp / "cat.png").write_bytes(PNG_HEADER + b"data")
    file = path_file_input("cat.png")
    assert file is not None and file.content_type == "image/png"


@pytest.mark.parametrize(
    "text",
    [
        "a photo of a cat",
        "cat.png",  # does not exist
        "Describe notes.txt please",  # mentions an existing file but is a sentence
        "notes.txt ",  # whitespace around it
        "notes.txt\n",
        "https://example.com/notes.txt",
        "data:text/plain;base64,aGk=",
        "",
        ".",
        "sub",  # a directory, no separator
        "sub/",  # a directory
    ],
)
def test_prompts_are_never_read_as_files(in_tmp, text):
    (in_tmp / "notes.txt").write_text("secret")
    (in_tmp / "sub").mkdir()
    assert as_file_input(text) is None
    assert path_file_input(text) is None


def test_missing_path_object_raises(tmp_path):
    with pytest.raises(ConfigurationError, match=r"missing\.png"):
        as_file_input(tmp_path / "missing.png")
    with pytest.raises(ConfigurationError, match="not a regular file"):
        as_file_input(tmp_path)


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_like_values_are_sniffed(kind):
    raw = PNG_HEADER + b"pixels"
    file = as_file_input(kind(raw))
    assert file.data == raw
    assert file.content_type == "image/png"
    assert file.filename.endswith(".png")
    assert file.sha256 == hashlib.sha256(raw).hexdigest()


def test_unknown_bytes_are_octet_stream():
    file = as_file_input(b"\x00\x01\x02")
    assert file.content_type == "application/octet-stream"
    assert file.filename == "input.bin"


def test_binary_file_object_is_read_once(tmp_path):
    path = tmp_path / "clip.mp3"
    path.write_bytes(b"ID3" + b"\x00" * 20)
    with open(path, "rb") as handle:
        file = as_file_input(handle)
        assert handle.read() == b""  # consumed
    assert file.filename == "clip.mp3"
    assert file.content_type == "audio/mpeg"
    assert file.data == path.read_bytes()
    assert as_file_input(io.BytesIO(b"%PDF-1.4")).content_type == "application/pdf"


def test_text_file_object_raises(tmp_path):
    with pytest.raises(ConfigurationError, match="text mode"):
        as_file_input(io.StringIO("hello"))


def test_pil_image_becomes_png():
    image = Image.new("RGB", (3, 2), (255, 0, 0))
    file = as_file_input(image)
    assert file.content_type == "image/png" and file.filename == "image.png"
    decoded = Image.open(io.BytesIO(file.data))
    assert decoded.size == (3, 2) and decoded.getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize("value", [1, 2.5, None, True, [1, 2], {"a": 1}, "hello"])
def test_non_files_are_none(value):
    assert as_file_input(value) is None


def test_identity_is_by_content(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"same")
    (tmp_path / "b.bin").write_bytes(b"same")
    a, b = as_file_input(tmp_path / "a.bin"), as_file_input(tmp_path / "b.bin")
    assert a.sha256 == b.sha256
    assert a != b  # different names
    assert as_file_input(tmp_path / "a.bin") == a
    assert FileInput.from_bytes(b"same", filename="a.bin") == a
    assert "same" not in repr(FileInput.from_bytes(b"same"))


def test_edited_file_is_hashed_again(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"one")
    first = as_file_input(path)
    path.write_bytes(b"three")
    os.utime(path, ns=(1, 1))
    second = as_file_input(path)
    assert second.sha256 == hashlib.sha256(b"three").hexdigest() != first.sha256
    with pytest.raises(ConfigurationError, match="changed"):
        _ = first.data


def test_data_uri_round_trips():
    file = FileInput.from_bytes(b"\xff\xd8\xff\xe0jpeg")
    uri = data_uri(file)
    header, payload = uri.split(",", 1)
    assert header == "data:image/jpeg;base64"
    assert base64.b64decode(payload) == b"\xff\xd8\xff\xe0jpeg"


def test_small_file_threshold_is_sensible():
    assert 64 * 1024 <= SMALL_FILE_BYTES <= 1024 * 1024


def test_map_files_replaces_nested_files():
    file = FileInput.from_bytes(b"abc")
    value = {"image": file, "refs": [file, "text", 3], "n": {"deep": (file,)}}
    mapped = map_files(value, content_hash)
    tag = content_hash(file)
    assert mapped == {"image": tag, "refs": [tag, "text", 3], "n": {"deep": [tag]}}
    assert value["image"] is file  # input left untouched
