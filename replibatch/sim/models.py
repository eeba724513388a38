"""The simulator's model registry and its demo models.

Each :class:`SimModel` pairs a Cog-style predictor with what Replicate knows about the model:
owner/name, hardware SKU (for price code), whether it is an official model (run by model name,
no versions, priced per unit) and its per-unit prices. Version ids are 64-hex digests of the model
name and schema, so they are stable across simulator restarts.

Demo models (all deterministic from their inputs, milliseconds of CPU, no weights):
``replibatch/tiny-llama`` (text, gpu-t4), ``replibatch/pixel-diffusion`` (image, gpu-l40s),
``replibatch/official-chat`` (official, per token), the judges ``replibatch/judge`` (grades the
answer in a rubric, gpu-a40-small) and ``replibatch/vision-judge`` (grades an image, gpu-l40s),
see `replibatch.sim.judges`, and the deployment ``replibatch/tiny-llama-prod``.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from PIL import Image, ImageDraw, ImageFilter

from replibatch.sim.cog import (
    BasePredictor,
    FileInput,
    Input,
    InputValidator,
    OutputFile,
    openapi_schema,
)
from replibatch.sim.judges import TextJudge, VisionJudge

__all__ = [
    "HARDWARE",
    "ModelRegistry",
    "OfficialChat",
    "PixelDiffusion",
    "SimDeployment",
    "SimModel",
    "TinyLlama",
    "default_deployments",
    "default_models",
    "demo_hardware",
    "demo_pricing",
]

# sku -> name, as GET /v1/hardware lists them (prices are in pricing-facts, not in the API).
HARDWARE: dict[str, str] = {
    "cpu": "CPU",
    "gpu-t4": "Nvidia T4 GPU",
    "gpu-a40-small": "Nvidia A40 GPU",
    "gpu-a40-large": "Nvidia A40 (Large) GPU",
    "gpu-l40s": "Nvidia L40S GPU",
    "gpu-a100-large": "Nvidia A100 (80GB) GPU",
    "gpu-h100": "Nvidia H100 GPU",
}


@dataclass(eq=False)
class SimModel:
    """A model hosted by the simulator.

    ``pricing`` holds per-unit USD prices for official models (e.g. ``{"input_token": 5e-07,
    "output_token": 1.5e-06}``); time-billed models leave it None and are priced by ``hardware``.
    Raises TypeError (from schema generation) when the predictor declares unsupported types.
    """

    owner: str
    name: str
    predictor: BasePredictor
    hardware: str
    kind: str = "text"
    description: str = ""
    official: bool = False
    pricing: Mapping[str, float] | None = None
    cog_version: str = "0.9.4"
    created_at: str = "2025-01-01T00:00:00.000000Z"
    openapi_schema: dict[str, Any] = field(init=False, repr=False)
    version_id: str = field(init=False)
    validator: InputValidator = field(init=False, repr=False)
    streams: bool = field(init=False)
    _set_up: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.openapi_schema = openapi_schema(self.predictor)
        canonical = json.dumps(self.openapi_schema, sort_keys=True, separators=(",", ":"))
        self.version_id = hashlib.sha256(f"{self.ref}\n{canonical}".encode()).hexdigest()
        self.validator = InputValidator(self.openapi_schema)
        output = self.openapi_schema["components"]["schemas"]["Output"]
        self.streams = output.get("x-cog-array-type") == "iterator"

    @property
    def ref(self) -> str:
        """``owner/name``."""
        return f"{self.owner}/{self.name}"

    def setup(self) -> None:
        """Call the predictor's ``setup()`` once."""
        if not self._set_up:
            self.predictor.setup()
            self._set_up = True


@dataclass(eq=False)
class SimDeployment:
    """A deployment: a name that runs a model's current version on given hardware."""

    owner: str
    name: str
    model: str
    hardware: str
    min_instances: int = 0
    max_instances: int = 1

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def id(self) -> str:
        """A ``dp-`` id, as the real service reports in deployment predictions' ``version``."""
        return "dp-" + hashlib.md5(self.ref.encode()).hexdigest()  # noqa: S324 - not security


class ModelRegistry:
    """Looks models up by ``owner/name`` and version id, and deployments by ``owner/name``.

    Raises ValueError when two models share a name.
    """

    def __init__(self, models: list[SimModel], deployments: list[SimDeployment]) -> None:
        self.models: dict[str, SimModel] = {}
        self.by_version: dict[str, SimModel] = {}
        for model in models:
            if model.ref in self.models:
                raise ValueError(f"two simulator models are named {model.ref}")
            self.models[model.ref] = model
            if not model.official:
                self.by_version[model.version_id] = model
        self.deployments: dict[str, SimDeployment] = {}
        for deployment in deployments:
            if deployment.model not in self.models:
                raise ValueError(f"deployment {deployment.ref} runs unknown model {deployment.model}")
            self.deployments[deployment.ref] = deployment

    def setup(self) -> None:
        for model in self.models.values():
            model.setup()


# ---------------------------------------------------------------------------------------------
# Text: a tiny deterministic word generator.

_WORDS = (
    "the a of and to in is that it for on with as was at by this be from or an are which "
    "model data light river mountain city night morning small quiet bright old new warm cold "
    "stone water wind forest garden road window voice story machine signal pattern question "
    "answer memory season color shadow cloud ocean field music paper engine market table "
    "walks sings holds turns finds keeps opens carries follows remembers builds waits listens "
    "slowly gently often always never softly together again far near above below inside "
    "golden silver green blue red gray hidden simple careful patient curious distant "
    "every some many few each other another such only just still even also then now"
).split()
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """A rough token count (words and punctuation), standing in for a real tokenizer."""
    return len(_TOKEN_RE.findall(text))


def _stable_seed(*parts: Any) -> int:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def generate_tokens(
    prompt: str, *, max_tokens: int, temperature: float, seed: int | None
) -> list[str]:
    """Plausible word tokens (leading spaces; joined they form text), deterministic from inputs.

    Temperature 0 ignores the seed (greedy); otherwise the same seed and inputs give the same
    text, and no seed gives random text. Temperature changes the text the way it does a real
    model's, so sweeps show it: higher temperature draws from more of the vocabulary (more
    distinct words), rambles longer (about 0.5x the prompt's natural length near 0 to 2.5x at 2)
    and repeats itself less (at low temperature a new sentence often loops back to an earlier
    one). Greedy decoding (exactly 0) loops and runs on: 2x the natural length.
    """
    prompt_words = [w.lower() for w in re.findall(r"[A-Za-z']+", prompt)] or ["nothing"]
    vocabulary = list(dict.fromkeys(prompt_words + list(_WORDS)))
    ranking = random.Random(_stable_seed("rank", prompt))
    if temperature == 0:
        rng = random.Random(_stable_seed("greedy", prompt))
    elif seed is not None:
        rng = random.Random(_stable_seed("sample", prompt, seed, temperature))
    else:
        rng = random.Random()
    natural_length = ranking.randint(40, 200)
    # Greedy decoding (0) degenerates into a loop that runs on; sampling rambles more when hotter.
    stretch = 2.0 if temperature == 0 else 0.5 + temperature
    length = max(1, min(max_tokens, round(natural_length * stretch)))
    spread = 1.0 + 30.0 * temperature  # how far down the ranked vocabulary sampling reaches
    repeat_chance = max(0.0, 0.6 - 0.6 * temperature)  # low temperature loops
    tokens: list[str] = []
    sentences: list[list[str]] = []
    current: list[str] = []
    sentence_length = 0
    previous = prompt_words[-1]
    while len(tokens) < length:
        i = len(tokens)
        if sentence_length == 0 and sentences and rng.random() < repeat_chance:
            # Loop back: the whole of an earlier sentence again, as low-temperature text does.
            again = sentences[rng.randrange(len(sentences))]
            tokens.extend(again[: length - len(tokens)])
            continue
        if sentence_length >= 6 and (rng.random() < 0.12 or i == length - 1):
            tokens.append(".")
            current.append(".")
            sentences.append([t if t.startswith(" ") or t in ".," else " " + t for t in current])
            current = []
            sentence_length = 0
            continue
        if sentence_length >= 3 and rng.random() < 0.08:
            tokens.append(",")
            current.append(",")
            continue
        # Per-context ranking: the same previous word always ranks the vocabulary the same way.
        context = random.Random(_stable_seed("ctx", prompt, previous, i // 7))
        pick = min(len(vocabulary) - 1, int(rng.expovariate(1.0 / spread)) if temperature else 0)
        offset = context.randrange(len(vocabulary))
        word = vocabulary[(offset + pick * 7) % len(vocabulary)]
        if sentence_length == 0:
            word = word.capitalize()
        token = word if i == 0 else " " + word
        tokens.append(token)
        current.append(token)
        previous = word.lower()
        sentence_length += 1
    return tokens


class TinyLlama(BasePredictor):
    """A small text model: streams word tokens; ~10 ms per token plus prefill on gpu-t4."""

    prefill_seconds = 0.15
    seconds_per_token = 0.01

    def predict(  # type: ignore[override]  # Cog's predict takes the model's own inputs
        self,
        prompt: str = Input(description="Text to continue"),
        temperature: float = Input(default=0.7, ge=0, le=2, description="0 is deterministic"),
        max_tokens: int = Input(default=128, ge=1, le=1024, description="Maximum tokens"),
        seed: Optional[int] = Input(default=None, description="Random seed; none is random"),
    ) -> Iterator[str]:
        yield from generate_tokens(prompt, max_tokens=max_tokens, temperature=temperature, seed=seed)

    def nominal_seconds(self, inputs: Mapping[str, Any], output: Any) -> float:
        return self.prefill_seconds + self.seconds_per_token * len(output or [])

    def token_counts(self, inputs: Mapping[str, Any], output: Any) -> tuple[int, int]:
        return count_tokens(str(inputs.get("prompt", ""))), len(output or [])


class OfficialChat(TinyLlama):
    """An official-style chat model (run by model name, priced per token)."""

    prefill_seconds = 0.1
    seconds_per_token = 0.005

    def predict(  # type: ignore[override]
        self,
        prompt: str = Input(description="User message"),
        system_prompt: str = Input(default="You are a helpful assistant.", description="System"),
        temperature: float = Input(default=0.6, ge=0, le=2),
        max_tokens: int = Input(default=512, ge=1, le=4096),
        seed: Optional[int] = Input(default=None),
    ) -> Iterator[str]:
        yield from generate_tokens(
            f"{system_prompt}\n{prompt}", max_tokens=max_tokens, temperature=temperature, seed=seed
        )

    def token_counts(self, inputs: Mapping[str, Any], output: Any) -> tuple[int, int]:
        system = str(inputs.get("system_prompt", "You are a helpful assistant."))
        return count_tokens(system) + count_tokens(str(inputs.get("prompt", ""))), len(output or [])


# ---------------------------------------------------------------------------------------------
# Images: shapes and colours from the prompt, noise that fades with more steps.

_COLOURS = {
    "red": (220, 40, 40), "orange": (240, 140, 30), "yellow": (240, 220, 50),
    "green": (50, 170, 70), "blue": (40, 90, 220), "purple": (140, 60, 200),
    "pink": (240, 130, 180), "black": (20, 20, 20), "white": (240, 240, 240),
    "gray": (128, 128, 128), "grey": (128, 128, 128), "brown": (130, 80, 40),
    "gold": (212, 175, 55), "teal": (30, 150, 150), "rainbow": (200, 80, 200),
}


def _palette(prompt: str) -> list[tuple[int, int, int]]:
    named = [_COLOURS[w] for w in re.findall(r"[a-z]+", prompt.lower()) if w in _COLOURS]
    rng = random.Random(_stable_seed("palette", prompt))
    while len(named) < 3:
        named.append((rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    return named


def render_image(
    prompt: str, *, width: int, height: int, steps: int, seed: int, index: int,
    init_image: bytes | None = None,
) -> bytes:
    """A PNG that depends visibly on every argument (see the module docstring)."""
    palette = _palette(prompt)
    rng = random.Random(_stable_seed("layout", prompt, seed, index))
    top, bottom = palette[0], palette[1]
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(Image.new("RGB", (width, height), bottom),
                            Image.new("RGB", (width, height), top), gradient)
    draw = ImageDraw.Draw(image)
    words = prompt.split()
    for i in range(max(1, min(12, len(words)))):
        colour = palette[(i + 2) % len(palette)]
        x0, y0 = rng.randrange(width), rng.randrange(height)
        size = rng.randint(min(width, height) // 10, min(width, height) // 3)
        box = (x0 - size, y0 - size, x0 + size, y0 + size)
        if len(words[i % len(words)]) % 2:
            draw.ellipse(box, fill=colour)
        else:
            draw.rectangle(box, fill=colour)
    if init_image is not None:
        source = Image.open(io.BytesIO(init_image)).convert("RGB").resize((width, height))
        image = Image.blend(image, source, 0.5)
    # Fewer steps leave more noise and a blurrier picture: "more steps, more detail".
    small = (max(1, width // 4), max(1, height // 4))
    # Seeded noise (Image.effect_noise is not), so the same inputs give the same PNG bytes.
    noise = Image.frombytes("L", small, rng.randbytes(small[0] * small[1]))
    noise = noise.convert("RGB").resize((width, height))
    image = Image.blend(image, noise, min(0.6, 3.0 / steps))
    if steps < 10:
        image = image.filter(ImageFilter.BoxBlur(10 - steps))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


SCHEDULERS = ("DDIM", "K_EULER", "DPMSolverMultistep")


class PixelDiffusion(BasePredictor):
    """A small image model: real PNGs; time grows with steps, pixels and outputs (gpu-l40s)."""

    def predict(  # type: ignore[override]  # Cog's predict takes the model's own inputs
        self,
        prompt: str = Input(description="What to draw (colour words pick the palette)"),
        width: int = Input(default=512, ge=64, le=1024, multiple_of=8),
        height: int = Input(default=512, ge=64, le=1024, multiple_of=8),
        num_inference_steps: int = Input(default=25, ge=1, le=50, description="More is finer"),
        num_outputs: int = Input(default=1, ge=1, le=4),
        scheduler: str = Input(default="K_EULER", choices=SCHEDULERS, description="Sampler"),
        seed: Optional[int] = Input(default=None, description="Random seed; none is random"),
        image: Optional[FileInput] = Input(default=None, description="Image to blend in"),
    ) -> list[OutputFile]:
        seed = random.randrange(2**31) if seed is None else seed
        init = image.read() if image is not None else None
        return [
            OutputFile(
                render_image(prompt, width=width, height=height, steps=num_inference_steps,
                             seed=seed + SCHEDULERS.index(scheduler), index=i, init_image=init),
                name=f"out-{i}.png",
                content_type="image/png",
            )
            for i in range(num_outputs)
        ]

    def nominal_seconds(self, inputs: Mapping[str, Any], output: Any) -> float:
        pixels = inputs["width"] * inputs["height"] / (512 * 512)
        per_step = 0.08 * pixels * (0.75 + 0.25 * inputs["num_outputs"])
        return 0.4 + per_step * inputs["num_inference_steps"]


# The demo models' billing (hardware SKU or per-unit prices) is read from the price table
# (replibatch/data/prices.json), the source of truth for cost columns, so the two cannot disagree.
def _price_entry(key: str) -> Any:
    from replibatch._spend.cost import PriceTable

    price = PriceTable.default().lookup(key)
    if price is None:
        raise LookupError(f"{key} has no entry in replibatch/data/prices.json")
    return price


def demo_hardware(key: str) -> str:
    """The hardware SKU the price table bills `key` (``owner/name`` or ``deployments/...``) on."""
    price = _price_entry(key)
    if price.hardware is None:
        raise LookupError(f"{key} is not billed per second on hardware in prices.json")
    return str(price.hardware)


def demo_pricing(key: str) -> dict[str, float]:
    """Per-unit USD prices of an official model from the price table (``input_token`` ...)."""
    price = _price_entry(key)
    if price.kind == "per_token":
        pairs = (("input_token", price.usd_per_input_token),
                 ("output_token", price.usd_per_output_token))
        return {unit: float(usd) for unit, usd in pairs if usd is not None}
    if price.kind == "per_output":
        return {price.unit: float(price.usd_per_output)}
    raise LookupError(f"{key} is not priced per unit in prices.json")


# Official models run on hardware the service chooses but bill per unit (see demo_pricing).
_OFFICIAL_CHAT_HARDWARE = "gpu-a100-large"


def default_models() -> list[SimModel]:
    """Fresh instances of the demo models."""
    return [
        SimModel("replibatch", "tiny-llama", TinyLlama(), demo_hardware("replibatch/tiny-llama"),
                 kind="text", description="A tiny text model for testing: streams plausible words."),
        SimModel("replibatch", "pixel-diffusion", PixelDiffusion(),
                 demo_hardware("replibatch/pixel-diffusion"), kind="image",
                 description="A tiny image model for testing: colourful shapes as PNG."),
        SimModel("replibatch", "official-chat", OfficialChat(), _OFFICIAL_CHAT_HARDWARE,
                 kind="text", description="An official-style chat model, priced per token.",
                 official=True, pricing=demo_pricing("replibatch/official-chat")),
        SimModel("replibatch", "judge", TextJudge(), demo_hardware("replibatch/judge"),
                 kind="text", description="A demo LLM judge: grades the answer in a rubric 1-5."),
        SimModel("replibatch", "vision-judge", VisionJudge(),
                 demo_hardware("replibatch/vision-judge"), kind="text",
                 description="A demo vision judge: grades an image 1-5."),
    ]


def default_deployments() -> list[SimDeployment]:
    """The demo deployment ``replibatch/tiny-llama-prod`` (runs tiny-llama on gpu-t4)."""
    return [SimDeployment("replibatch", "tiny-llama-prod", "replibatch/tiny-llama",
                          demo_hardware("deployments/replibatch/tiny-llama-prod"))]

