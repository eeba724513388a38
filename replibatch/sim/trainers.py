"""The simulator's demo trainers: small, real learning from a zip of training files.

A trainer belongs to a trainable model version, as on Replicate where a version's ``train()``
(declared next to ``predict()`` in Cog) is what ``POST /v1/models/{owner}/{name}/versions/{id}/
trainings`` runs (the recorded traffic trains ``stability-ai/sdxl``'s own version:
``../shared/replicate-api/cassettes/trainings-create.yaml``). Its inputs are declared with Cog's
``Input(...)`` on ``train``, and Cog publishes them in the version's ``openapi_schema`` as
``components.schemas.TrainingInput`` (the schema key Cog's CLI reads for ``cog train``).

Two trainers, one per demo model kind; each learns something you can see in the outputs:

- :class:`TextStyleTrainer` (``replibatch/tiny-llama``): from a zip of ``.txt`` files it learns the
  corpus's vocabulary (the ``lora_rank × 4`` most frequent words) and which word follows which.
  The trained version writes like the base model but swaps words for corpus words with a
  probability, the *strength*: so outputs use the training data's vocabulary.
- :class:`PaletteTrainer` (``replibatch/pixel-diffusion``): from a zip of images it learns their
  palette (``clamp(lora_rank // 4, 2, 8)`` dominant colours). The trained version recolours its
  pictures towards that palette, fully when the prompt contains ``trigger_word`` and at a quarter
  of the strength otherwise, like a LoRA and its trigger.

Strength grows with training: ``1 - exp(-10 × steps × learning_rate)`` (200 steps at 4e-4 give
0.55; 1000 at 1e-3 give 1.0). Training time is nominal model seconds per step (before the
simulator's ``time_scale``). Everything is deterministic from the inputs; pure functions apart
from the zip reading.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import json
import math
import random
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Optional

from PIL import Image, UnidentifiedImageError

from replibatch.sim.cog import (
    BasePredictor,
    FileInput,
    Input,
    InputValidator,
    OutputFile,
    call_kwargs,
    openapi_schema,
)
from replibatch.sim.models import PixelDiffusion, TinyLlama

__all__ = [
    "Palette",
    "PaletteTrainer",
    "TextStyle",
    "TextStyleTrainer",
    "Trainer",
    "TrainingDataError",
    "strength",
    "train_kwargs",
    "trainer_for",
    "training_schema",
    "training_validator",
]

_MAX_FILES = 200
_MAX_UNPACKED = 20 * 1024 * 1024  # refuse zip bombs: the demo data sets are a few KB
_WORD = re.compile(r"[A-Za-z']+")
# Function words would dominate any corpus's counts and say nothing about its style.
_STOP = frozenset(
    [
        "the", "a", "an", "and", "or", "of", "to", "in", "on", "at", "by", "for", "with", "from",
        "as", "is", "are", "was", "were", "be", "been", "it", "its", "this", "that", "these",
        "those", "he", "she", "they", "we", "you", "i", "his", "her", "their", "our", "your",
        "not", "but", "so", "if", "then", "than", "there",
    ]
)


class TrainingDataError(ValueError):
    """The training data cannot be used (not a zip, no usable files, too large)."""


def strength(steps: int, learning_rate: float) -> float:
    """How strongly a training imprints its data: ``1 - exp(-10 × steps × learning_rate)``."""
    return 1.0 - math.exp(-10.0 * steps * learning_rate)


def _stable_seed(*parts: Any) -> int:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def read_zip(data: bytes, suffixes: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of the zip's files ending in one of ``suffixes``, in name order.

    Raises TrainingDataError when ``data`` is not a zip, holds too much, or has no such file.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise TrainingDataError("training data is not a zip file") from None
    members = [
        info for info in archive.infolist()
        if not info.is_dir() and info.filename.lower().endswith(suffixes)
        and not info.filename.startswith("__MACOSX/")
    ]
    if not members:
        raise TrainingDataError(f"the zip holds no {'/'.join(suffixes)} file")
    if len(members) > _MAX_FILES or sum(i.file_size for i in members) > _MAX_UNPACKED:
        raise TrainingDataError(f"the zip is too large for a demo trainer (max {_MAX_FILES} files)")
    return [(info.filename, archive.read(info)) for info in sorted(members, key=lambda i: i.filename)]


# -- what the trainers learn ----------------------------------------------------------------------


@dataclass(frozen=True)
class TextStyle:
    """Learned weights of the text trainer: ranked vocabulary, follower lists, strength."""

    words: tuple[tuple[str, int], ...]  # (word, count), most frequent first
    followers: Mapping[str, tuple[tuple[str, int], ...]]
    strength: float

    def to_json(self) -> dict[str, Any]:
        return {"kind": "text-style", "strength": self.strength, "words": [list(w) for w in self.words],
                "followers": {k: [list(f) for f in v] for k, v in sorted(self.followers.items())}}


@dataclass(frozen=True)
class Palette:
    """Learned weights of the image trainer: colours (most common first), trigger, strength."""

    colours: tuple[tuple[int, int, int], ...]
    trigger_word: str
    strength: float

    def to_json(self) -> dict[str, Any]:
        return {"kind": "palette", "strength": self.strength, "trigger_word": self.trigger_word,
                "colours": [list(c) for c in self.colours]}


def learn_text_style(texts: list[str], *, vocabulary_size: int, strength: float) -> TextStyle:
    """The corpus's ``vocabulary_size`` most frequent content words and their followers.

    Raises TrainingDataError when the texts hold no usable word.
    """
    sequences = [[w.lower() for w in _WORD.findall(text)] for text in texts]
    counts = Counter(w for seq in sequences for w in seq if len(w) > 2 and w not in _STOP)
    if not counts:
        raise TrainingDataError("the training texts hold no words to learn")
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:vocabulary_size]
    known = {w for w, _ in ranked}
    pairs: dict[str, Counter[str]] = {}
    for seq in sequences:
        content = [w for w in seq if w in known]
        for a, b in itertools.pairwise(content):
            if a != b:
                pairs.setdefault(a, Counter())[b] += 1
    followers = {
        a: tuple(sorted(c.items(), key=lambda item: (-item[1], item[0]))[:8]) for a, c in pairs.items()
    }
    return TextStyle(tuple(ranked), followers, strength)


def learn_palette(images: list[bytes], *, colours: int, trigger_word: str, strength: float) -> Palette:
    """The ``colours`` dominant colours of the images (median cut over a mosaic of thumbnails).

    Raises TrainingDataError when no image can be decoded.
    """
    thumbs = []
    for data in images:
        try:
            thumbs.append(Image.open(io.BytesIO(data)).convert("RGB").resize((32, 32)))
        except (UnidentifiedImageError, OSError, ValueError):
            continue
    if not thumbs:
        raise TrainingDataError("no image in the training data could be decoded")
    mosaic = Image.new("RGB", (32 * len(thumbs), 32))
    for i, thumb in enumerate(thumbs):
        mosaic.paste(thumb, (32 * i, 0))
    quantized = mosaic.quantize(colors=colours, method=Image.Quantize.MEDIANCUT)
    flat: list[int] = list(quantized.getpalette() or [])
    used = sorted(quantized.getcolors() or [], key=lambda item: (-item[0], int(item[1])))
    found = tuple((flat[3 * i], flat[3 * i + 1], flat[3 * i + 2])
                  for i in (int(index) for _, index in used))  # type: ignore[call-overload]
    return Palette(found, trigger_word, strength)


# -- applying the weights to a base model's outputs -----------------------------------------------


def restyle_tokens(tokens: list[str], style: TextStyle, *, rng: random.Random) -> list[str]:
    """Swap word tokens for corpus words with probability ``style.strength``.

    Keeps the base model's shape (leading spaces, capitalised sentence starts, punctuation);
    a swapped word follows the previous word in the corpus when the corpus has such a pair.
    """
    words = [w for w, _ in style.words]
    weights = [c for _, c in style.words]
    out: list[str] = []
    previous: str | None = None
    for token in tokens:
        bare = token.strip()
        if not bare.isalpha() or rng.random() >= style.strength:
            out.append(token)
            previous = bare.lower() if bare.isalpha() else previous
            continue
        nexts = style.followers.get(previous or "")
        if nexts and rng.random() < 0.6:
            word = rng.choices([w for w, _ in nexts], [c for _, c in nexts])[0]
        else:
            word = rng.choices(words, weights)[0]
        previous = word
        if bare[0].isupper():
            word = word.capitalize()
        out.append(token[: len(token) - len(token.lstrip())] + word)
    return out


def recolour(png: bytes, palette: Palette, amount: float) -> bytes:
    """The picture mapped onto the palette's colours, blended in by ``amount`` (0..1)."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    if amount <= 0:
        return png
    swatch = Image.new("P", (1, 1))
    flat = [v for colour in palette.colours for v in colour]
    swatch.putpalette(flat + flat[:3] * (256 - len(palette.colours)))
    mapped = image.quantize(palette=swatch, dither=Image.Dither.NONE).convert("RGB")
    blended = Image.blend(image, mapped, min(1.0, amount))
    buffer = io.BytesIO()
    blended.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _trained_class(base: type[BasePredictor], adapt: Callable[[dict[str, Any], Any], Any]) -> type:
    """A subclass of ``base`` whose ``predict`` post-processes the base output with ``adapt``.

    ``functools.wraps`` keeps the base signature and annotations, so the trained version
    publishes exactly the base version's input schema (Cog derives it from ``predict``).
    """
    base_predict = base.predict

    @functools.wraps(base_predict)
    def predict(self: BasePredictor, **kwargs: Any) -> Any:
        output = base_predict(self, **kwargs)
        if isinstance(output, Iterator):  # streamed tokens: adapt sees the whole text, and the
            return iter(adapt(kwargs, list(output)))  # server still streams the result
        return adapt(kwargs, output)

    return type(f"Trained{base.__name__}", (base,), {"predict": predict})


# -- the trainers ---------------------------------------------------------------------------------


class Trainer:
    """A Cog-style trainer: inputs declared on :meth:`train`, which returns learned weights.

    Subclasses say how long a training takes (:meth:`nominal_seconds`, before ``time_scale``),
    describe the weights for the logs (:meth:`describe`) and build the trained predictor
    (:meth:`trained_predictor`).
    """

    seconds_per_step = 0.02
    setup_seconds = 1.0

    def train(self, **inputs: Any) -> Any:
        """Learn from the inputs; raises TrainingDataError (or ValueError) on unusable data."""
        raise NotImplementedError

    def nominal_seconds(self, inputs: Mapping[str, Any]) -> float:
        return self.setup_seconds + self.seconds_per_step * int(inputs.get("steps", 1))

    def describe(self, weights: Any) -> list[str]:
        return []

    def trained_predictor(self, base: BasePredictor, weights: Any) -> BasePredictor:
        raise NotImplementedError


class TextStyleTrainer(Trainer):
    """Learns a corpus's vocabulary and word order from a zip of ``.txt`` files."""

    seconds_per_step = 0.02

    def train(  # type: ignore[override]
        self,
        train_data: FileInput = Input(description="A zip of .txt files to learn the style of"),
        steps: int = Input(default=200, ge=1, le=5000, description="Training steps"),
        learning_rate: float = Input(default=0.0004, ge=0, le=0.01, description="Step size"),
        lora_rank: int = Input(default=16, ge=1, le=128, description="Capacity: 4 words per rank"),
        seed: Optional[int] = Input(default=None, description="Unused; accepted like real trainers"),  # noqa: UP045 - cog reads typing.Optional
    ) -> TextStyle:
        texts = [data.decode("utf-8", "replace") for _, data in read_zip(train_data.read(), (".txt", ".md"))]
        return learn_text_style(texts, vocabulary_size=4 * lora_rank,
                                strength=strength(steps, learning_rate))

    def describe(self, weights: TextStyle) -> list[str]:
        top = ", ".join(w for w, _ in weights.words[:8])
        return [f"learned {len(weights.words)} words (top: {top}); strength {weights.strength:.3f}"]

    def trained_predictor(self, base: BasePredictor, weights: TextStyle) -> BasePredictor:
        def adapt(kwargs: dict[str, Any], tokens: list[str]) -> list[str]:
            seed, temperature = kwargs.get("seed"), kwargs.get("temperature", 0.0)
            deterministic = seed is not None or not temperature
            rng = random.Random(_stable_seed("style", kwargs.get("prompt"), seed, temperature)
                                if deterministic else None)
            return restyle_tokens(tokens, weights, rng=rng)

        return _trained_class(type(base), adapt)()


class PaletteTrainer(Trainer):
    """Learns the palette of a zip of images (``.png``, ``.jpg``, ``.jpeg``, ``.webp``)."""

    seconds_per_step = 0.05

    def train(  # type: ignore[override]
        self,
        input_images: FileInput = Input(description="A zip of images to learn the palette of"),
        steps: int = Input(default=500, ge=1, le=4000, description="Training steps"),
        learning_rate: float = Input(default=0.0004, ge=0, le=0.01, description="Step size"),
        lora_rank: int = Input(default=16, ge=1, le=128, description="Capacity: rank/4 colours"),
        trigger_word: str = Input(default="TOK", description="Word that calls up the style"),
    ) -> Palette:
        files = read_zip(input_images.read(), (".png", ".jpg", ".jpeg", ".webp"))
        return learn_palette([data for _, data in files], colours=max(2, min(8, lora_rank // 4)),
                             trigger_word=trigger_word, strength=strength(steps, learning_rate))

    def describe(self, weights: Palette) -> list[str]:
        shown = " ".join("#{:02x}{:02x}{:02x}".format(*c) for c in weights.colours)
        return [(f"learned palette {shown}; trigger {weights.trigger_word!r}; "
                 f"strength {weights.strength:.3f}")]

    def trained_predictor(self, base: BasePredictor, weights: Palette) -> BasePredictor:
        def adapt(kwargs: dict[str, Any], outputs: list[OutputFile]) -> list[OutputFile]:
            prompt = str(kwargs.get("prompt", "")).lower()
            triggered = not weights.trigger_word or weights.trigger_word.lower() in prompt
            amount = weights.strength * (1.0 if triggered else 0.25)
            return [OutputFile(recolour(f.data, weights, amount), f.name, f.content_type)
                    for f in outputs]

        return _trained_class(type(base), adapt)()


def trainer_for(predictor: BasePredictor) -> Trainer | None:
    """The demo trainer of a model's predictor, or None when the model cannot be trained."""
    if isinstance(predictor, TinyLlama):
        return TextStyleTrainer()
    if isinstance(predictor, PixelDiffusion):
        return PaletteTrainer()
    return None


_STAND_INS: dict[type[Trainer], BasePredictor] = {}
_SCHEMAS: dict[type[Trainer], dict[str, Any]] = {}


def _stand_in(cls: type[Trainer]) -> BasePredictor:
    # Cog's schema and argument helpers read ``predict``: a stand-in whose predict is ``train``
    # (one per trainer class, since those helpers cache by class).
    if cls not in _STAND_INS:
        stand_in: type[BasePredictor] = type(
            f"{cls.__name__}Inputs", (BasePredictor,), {"predict": cls.train})
        _STAND_INS[cls] = stand_in()
    return _STAND_INS[cls]


def _training_schema(cls: type[Trainer]) -> dict[str, Any]:
    if cls not in _SCHEMAS:
        schemas = openapi_schema(_stand_in(cls))["components"]["schemas"]
        schemas["TrainingInput"] = {**schemas.pop("Input"), "title": "TrainingInput"}
        schemas.pop("Output", None)
        schemas["TrainingOutput"] = {
            "type": "object", "title": "TrainingOutput", "required": ["weights"],
            "properties": {"weights": {"type": "string", "format": "uri", "title": "Weights"}},
        }
        _SCHEMAS[cls] = schemas
    return _SCHEMAS[cls]


def training_schema(trainer: Trainer) -> dict[str, Any]:
    """``components.schemas`` entries Cog publishes for a trainer: ``TrainingInput`` and
    ``TrainingOutput`` (plus any enum components the inputs refer to). A fresh copy."""
    return json.loads(json.dumps(_training_schema(type(trainer))))


def training_validator(trainer: Trainer) -> InputValidator:
    """Checks training inputs against the trainer's ``TrainingInput`` schema."""
    schemas = training_schema(trainer)
    return InputValidator({"components": {"schemas": {**schemas, "Input": schemas["TrainingInput"]}}})


def train_kwargs(trainer: Trainer, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments for ``train``: the request's inputs plus declared defaults."""
    return call_kwargs(_stand_in(type(trainer)), inputs)
