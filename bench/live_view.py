"""Live view and progress: cost per finished row and memory over a long run (no display, no I/O).

    python bench/live_view.py [--rows 100000]

Feeds ``--rows`` finished rows (text, every 50th failed, every 7th an image row with four local
PNG files) through `Progress.tick` with the notebook's live view attached, on a simulated clock
that advances 2 ms per row (a 100,000-row run lasting 200 s). The bar is a stand-in that counts
calls, so the figures are replibatch's own work: microseconds per row, how many redraws happened
(at most two per simulated second), the time a redraw takes, and the memory the view holds at a
quarter, half and the end of the run (with ``--trace``: tracemalloc, which slows every row; flat
means it does not grow with rows). The image rows share four files, so thumbnails are encoded
once here; in a real run each drawn row's thumbnails are encoded once (at most two draws a second).
Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

from PIL import Image

from replibatch._engine.live import LiveView
from replibatch._engine.progress import Progress


class CountingBar:
    colour = None

    def __init__(self) -> None:
        self.updates = 0

    def update(self, n: int) -> None:
        self.updates += n

    def set_postfix_str(self, text: str, refresh: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trace", action="store_true",
                        help="measure memory with tracemalloc (slows every row down)")
    args = parser.parse_args()
    rows = args.rows

    folder = Path(tempfile.mkdtemp(prefix="rb-live-bench-"))
    images = []
    for i in range(4):
        path = folder / f"{i}.png"
        Image.new("RGB", (512, 512), (40 * i, 90, 160)).save(path)
        images.append(str(path))

    now = [0.0]
    draw_seconds: list[float] = []
    live = LiveView(lambda obj: None, total=rows, clock=lambda: now[0])
    original_draw = live.draw

    def timed_draw() -> None:
        started = time.perf_counter()
        original_draw()
        draw_seconds.append(time.perf_counter() - started)

    live.draw = timed_draw  # type: ignore[method-assign]
    progress = Progress(CountingBar(), live=live)

    if args.trace:
        tracemalloc.start()
    memory = {}
    started = time.perf_counter()
    for i in range(rows):
        now[0] = i * 0.002
        failed = i % 50 == 49
        row = {
            "status": "failed" if failed else "succeeded",
            "output": images if i % 7 == 0 else f"output text of row {i} " * 8,
            "error": "CUDA out of memory" if failed else None,
            "latency_s": 1.5,
            "cost_usd": 0.000012,
        }
        progress.tick(row, {"prompt": f"prompt number {i}"})
        if args.trace and i + 1 in (rows // 4, rows // 2, rows):
            memory[i + 1] = tracemalloc.get_traced_memory()[0]
    elapsed = time.perf_counter() - started
    if args.trace:
        tracemalloc.stop()

    print(f"rows: {rows:,}   simulated run: {rows * 0.002:.0f} s")
    print(f"per finished row: {elapsed / rows * 1e6:.1f} µs (tick + live view, redraws included)")
    print(f"redraws: {live.draws:,} ({live.draws / (rows * 0.002):.2f} per simulated second)")
    if draw_seconds:
        draw_seconds.sort()
        print(f"one redraw: median {draw_seconds[len(draw_seconds) // 2] * 1000:.1f} ms, "
              f"max {draw_seconds[-1] * 1000:.1f} ms")
    if memory:
        print("memory held (tracemalloc): " + ", ".join(
            f"{n:,} rows {size / 1024:.0f} KiB" for n, size in memory.items()))
    print(f"rows kept for display: {len(live.recent)} recent, {len(live.failures)} failures")


if __name__ == "__main__":
    main()
