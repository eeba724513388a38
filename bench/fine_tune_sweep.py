"""Fine-tune sweep on the simulator: does each trained version show what it was trained on?

    python bench/fine_tune_sweep.py

Trains 2 x 2 hyper-parameters (steps x learning_rate) of each demo trainer on the bundled data
(``data/fine_tune/sea-stories.zip`` for ``replibatch/tiny-llama``, ``warm-images.zip`` for
``replibatch/pixel-diffusion``), runs every trained version and the base on the same prompts, and
prints per version: the trainer's strength, the training's predict_time and cost (from the price
table), and a measure of the training data in the outputs. Text: the share of output words that
only the training corpus has (not the base model's outputs). Images: the mean red-minus-blue of
the pictures (the warm palette is reds and ambers). The official ``replicate`` client does the
requests, unchanged. Figures are printed, not asserted; the simulator runs at time_scale 0.01.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from typing import Any

import httpx
import replicate
from PIL import Image, ImageStat

from replibatch._spend.cost import PriceTable
from replibatch._spend.training_cost import training_cost
from replibatch.sim import serve
from replibatch.sim.trainers import read_zip, strength

DATA = Path(__file__).parent.parent / "data" / "fine_tune"
ME = "replibatch-sim"
GRID = [(steps, rate) for steps in (100, 300) for rate in (0.0002, 0.001)]
PROMPTS = ["Tell me about the city at night", "Describe a morning walk", "What is a machine?",
           "Write a short note to a friend", "Explain how a bicycle works"]
IMAGE_PROMPTS = ["a TOK picture of a green garden", "a TOK blue house", "a TOK portrait"]


def _words(texts: list[str]) -> list[str]:
    return [w.lower() for text in texts for w in re.findall(r"[A-Za-z]+", text)]


def _wait(client: replicate.Client, training: Any) -> Any:
    while training.status not in ("succeeded", "failed", "canceled"):
        time.sleep(0.01)
        training.reload()
    return training


def _train_all(client: replicate.Client, trainer: str, destination: str, data_field: str,
               data: Path, **extra: Any) -> list[tuple[int, float, Any]]:
    version = client.models.get(trainer).latest_version.id
    client.models.create(owner=ME, name=destination, visibility="private", hardware="cpu")
    started = []
    for steps, rate in GRID:
        with data.open("rb") as handle:
            started.append((steps, rate, client.trainings.create(
                model=trainer, version=version, destination=f"{ME}/{destination}",
                input={data_field: handle, "steps": steps, "learning_rate": rate, **extra})))
    return [(steps, rate, _wait(client, t)) for steps, rate, t in started]


def _row(label: str, steps: Any, rate: Any, training: Any, trainer: str, figure: str) -> str:
    if training is None:
        return f"| {label} | – | – | – | – | – | {figure} |"
    # The SDK's Training drops metrics: read the record itself.
    record = training._client._request("GET", f"/v1/trainings/{training.id}").json()
    cost, _ = training_cost(PriceTable.default(), trainer, record)
    predict = record["metrics"]["predict_time"]
    return (f"| {label} | {steps} | {rate:g} | {strength(steps, rate):.2f} | {predict:.3f} | "
            f"{cost:.7f} | {figure} |")


def main() -> None:
    header = ("| version | steps | learning_rate | strength | predict_time s | cost_usd | {} |\n"
              "|---|---|---|---|---|---|---|")
    with serve(time_scale=0.01, seed=0) as server:
        client = replicate.Client(api_token="r8_bench_offline", base_url=server.url)
        client.poll_interval = 0.01
        text = "replibatch/tiny-llama"
        trained = _train_all(client, text, "sea-llama", "train_data", DATA / "sea-stories.zip")

        def outputs(ref: str) -> list[str]:
            return ["".join(client.run(ref, input={"prompt": p, "seed": s, "max_tokens": 120}))
                    for p in PROMPTS for s in (1, 2)]

        base_words = set(_words(outputs(text)))
        corpus = {w for _, data in read_zip((DATA / "sea-stories.zip").read_bytes(), (".txt",))
                  for w in _words([data.decode()])} - base_words
        print("Text trainer, sea-stories.zip: share of output words only the corpus has")
        print(header.format("corpus-word share"))
        print(_row("base", None, None, None, text, "0.000"))
        for steps, rate, t in trained:
            found = _words(outputs(t.output["version"]))
            share = sum(w in corpus for w in found) / len(found)
            print(_row(t.output["version"][-8:], steps, rate, t, text, f"{share:.3f}"))

        image = "replibatch/pixel-diffusion"
        trained = _train_all(client, image, "warm-diffusion", "input_images",
                             DATA / "warm-images.zip", trigger_word="TOK")

        def warmth(ref: str) -> float:
            total = 0.0
            for prompt in IMAGE_PROMPTS:
                urls = client.run(ref, input={"prompt": prompt, "seed": 5, "width": 128,
                                              "height": 128})
                png = httpx.get(str(urls[0])).content
                r, _, b = ImageStat.Stat(Image.open(io.BytesIO(png)).convert("RGB")).mean
                total += r - b
            return total / len(IMAGE_PROMPTS)

        print("\nImage trainer, warm-images.zip: mean red - blue of the pictures (0..255)")
        print(header.format("red - blue"))
        print(_row("base", None, None, None, image, f"{warmth(image):.1f}"))
        for steps, rate, t in trained:
            print(_row(t.output["version"][-8:], steps, rate, t, image,
                       f"{warmth(t.output['version']):.1f}"))
        stats = server.trainings.stats
        print(f"\ntrainings created {stats.creates}, succeeded {stats.succeeded}, "
              f"duplicates {stats.duplicate_creates}")


if __name__ == "__main__":
    main()
