"""Write the bundled fine-tuning data sets (deterministic: same bytes on every run).

    python data/fine_tune/make_data.py        # rewrites the four zips next to this script

- ``sea-stories.zip`` / ``forest-stories.zip``: four short ``.txt`` files each, written for this
  project, for the text trainer (``replibatch/tiny-llama``'s ``train_data``).
- ``warm-images.zip`` / ``cool-images.zip``: four 24×24 PNGs each (reds and ambers / blues and
  teals), for the image trainer (``replibatch/pixel-diffusion``'s ``input_images``).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).parent

SEA = {
    "harbor.txt": (
        "At dawn the harbor wakes. Gulls circle the masts, the tide turns against the pier, and "
        "fishermen coil wet rope while the lighthouse fades into a pale sky. Salt hangs in the air."
    ),
    "storm.txt": (
        "The storm came from the west. Waves broke over the bow, the sails cracked like thunder, "
        "and the sailors held the rigging while the ship climbed each grey swell and fell again."
    ),
    "tide.txt": (
        "Twice a day the tide leaves the shore and returns. Crabs hide under kelp, shells gleam on "
        "wet sand, and children race the waves along the harbor wall until the water rises."
    ),
    "voyage.txt": (
        "Our voyage followed the coast for forty days. We charted reefs and islands, tasted salt "
        "on every wind, and steered by the lighthouse beams when the fog rolled across the sea."
    ),
}
FOREST = {
    "moss.txt": (
        "Moss covers the old oak roots. Ferns unfold beside the stream, mushrooms rise after rain, "
        "and the forest floor smells of pine needles and damp bark."
    ),
    "owl.txt": (
        "At dusk the owl leaves its hollow in the birch. Deer step softly through the ferns, a fox "
        "listens under the brambles, and the pines sway in the evening wind."
    ),
    "trail.txt": (
        "The trail climbs between cedar and spruce. Sunlight falls through the canopy in thin "
        "gold beams, squirrels chatter in the branches, and acorns crunch underfoot."
    ),
    "seasons.txt": (
        "In autumn the maple leaves burn red and amber, in winter snow rests on the spruce, and in "
        "spring the meadow at the forest edge fills with bluebells and birdsong."
    ),
}
WARM = [((200, 40, 30), (245, 150, 40)), ((230, 90, 20), (250, 200, 60)),
        ((170, 30, 50), (240, 110, 50)), ((250, 180, 40), (210, 60, 30))]
COOL = [((20, 60, 160), (40, 170, 190)), ((30, 110, 200), (120, 200, 220)),
        ((60, 40, 150), (30, 140, 170)), ((20, 150, 140), (40, 80, 190))]


def _image(top: tuple[int, int, int], bottom: tuple[int, int, int], index: int) -> bytes:
    gradient = Image.linear_gradient("L").resize((24, 24))
    image = Image.composite(Image.new("RGB", (24, 24), bottom), Image.new("RGB", (24, 24), top),
                            gradient)
    ImageDraw.Draw(image).ellipse((4 + index, 4, 14 + index, 14), fill=bottom)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))  # fixed: same bytes
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def data_sets() -> dict[str, bytes]:
    """File name -> zip bytes of every bundled data set."""
    return {
        "sea-stories.zip": _zip({k: v.encode() + b"\n" for k, v in SEA.items()}),
        "forest-stories.zip": _zip({k: v.encode() + b"\n" for k, v in FOREST.items()}),
        "warm-images.zip": _zip({f"warm-{i}.png": _image(*c, i) for i, c in enumerate(WARM)}),
        "cool-images.zip": _zip({f"cool-{i}.png": _image(*c, i) for i, c in enumerate(COOL)}),
    }


def main() -> None:
    for name, data in data_sets().items():
        (HERE / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
