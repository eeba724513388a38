import pytest

from replibatch._table.refs import ModelRef, parse_model_ref
from replibatch.errors import ConfigurationError

VERSION = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"


def test_owner_name_is_a_model_reference():
    ref = parse_model_ref("meta/meta-llama-3-8b-instruct")
    assert ref == ModelRef("model", "meta", "meta-llama-3-8b-instruct", None)
    assert str(ref) == "meta/meta-llama-3-8b-instruct"
    assert ref.model == "meta/meta-llama-3-8b-instruct"


def test_pinned_version():
    ref = parse_model_ref(f"stability-ai/sdxl:{VERSION}")
    assert (ref.kind, ref.owner, ref.name, ref.version) == ("version", "stability-ai", "sdxl", VERSION)
    assert str(ref) == f"stability-ai/sdxl:{VERSION}"


def test_bare_version_is_lowercased_and_trimmed():
    ref = parse_model_ref(f"  {VERSION.upper()}\n")
    assert (ref.kind, ref.owner, ref.name, ref.version) == ("version", None, None, VERSION)
    assert str(ref) == VERSION
    assert ref.model is None


def test_deployment():
    ref = parse_model_ref("deployments/acme/my-llm.v2")
    assert (ref.kind, ref.owner, ref.name, ref.version) == ("deployment", "acme", "my-llm.v2", None)
    assert str(ref) == "deployments/acme/my-llm.v2"


@pytest.mark.parametrize("text", ["a_b/c.d-e", "black-forest-labs/flux-1.1-pro", "x/y"])
def test_canonical_text_round_trips(text):
    assert str(parse_model_ref(text)) == text
    assert parse_model_ref(str(parse_model_ref(text))) == parse_model_ref(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "sdxl",
        "Meta/Llama",
        "owner/name/extra",
        "owner/name:abc123",
        f"owner/name:{VERSION}x",
        VERSION[:-1],
        "deployments/acme",
        "deployments/acme/x/y",
        "owner /name",
        "https://replicate.com/owner/name",
        "owner/name:",
    ],
)
def test_bad_references_raise_naming_text_and_forms(text):
    with pytest.raises(ConfigurationError) as info:
        parse_model_ref(text)
    message = str(info.value)
    assert repr(text) in message
    assert "deployments/owner/name" in message and "owner/name:" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", [None, 3, float("nan"), b"owner/name"])
def test_non_strings_raise(value):
    with pytest.raises(ConfigurationError, match=type(value).__name__):
        parse_model_ref(value)


def test_with_version_pins_a_model():
    ref = parse_model_ref("stability-ai/sdxl").with_version(VERSION.upper())
    assert ref == parse_model_ref(f"stability-ai/sdxl:{VERSION}")
    with pytest.raises(ConfigurationError):
        parse_model_ref("stability-ai/sdxl").with_version("dp-123")
    with pytest.raises(ConfigurationError):
        parse_model_ref("deployments/a/b").with_version(VERSION)


def test_refs_are_hashable_and_frozen():
    ref = parse_model_ref("a/b")
    assert {ref: 1}[parse_model_ref(" a/b ")] == 1
    with pytest.raises(AttributeError):
        ref.owner = "c"
