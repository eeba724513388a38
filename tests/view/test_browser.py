"""The views in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright.

The quickstart notebook's cells run here (against its simulator), a 200-prompt sweep and an image
run add a long comparison and multi-image cells, and the exported HTML is loaded in Chromium:
the assertions are on what the browser computes (styles, geometry), not on HTML text.

- the comparison's header row and prompt column stay in view after scrolling 200 rows;
- every text in every view has a contrast of at least 4.5:1 (WCAG AA) in JupyterLab's dark theme,
  in a stand-alone page read with a dark OS preference, and in the light theme;
- every plotted point lies inside its axes.

Skipped, with the reason, where Playwright or Chromium is missing (CI installs both: .ci/run).
Playwright drives the system browser through ``executable_path``; it never downloads one.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import replibatch as rb
from replibatch import plot
from replibatch._engine import progress
from replibatch._engine.live import LiveView
from replibatch._engine.progress import Progress
from replibatch._engine.runsummary import RunSummary
from replibatch._view.browse import Browser
from replibatch._view.report import build_report
from replibatch.sim import serve

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install -e '.[dev]')"
)
CHROMIUM = os.environ.get("REPLIBATCH_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM} (Debian: apt-get install -y chromium)", allow_module_level=True
    )

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MIN_CONTRAST = 4.5
# JupyterLab 4's dark theme variables our palette reads (from @jupyterlab/theme-dark-extension),
# used when that CSS file is not installed; the real file is preferred when it is.
LAB_DARK_FALLBACK = """
:root { --jp-layout-color0: #111; --jp-layout-color1: #212121; --jp-layout-color2: #424242;
  --jp-border-color2: #424242; --jp-content-font-color1: #fff;
  --jp-content-font-color2: rgba(255,255,255,.7); --jp-content-link-color: #64b5f6; }
"""


def _lab_dark_css() -> str:
    theme = Path(sys.prefix, "share/jupyter/lab/themes/@jupyterlab/theme-dark-extension/index.css")
    return theme.read_text(encoding="utf-8") if theme.is_file() else LAB_DARK_FALLBACK


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The quickstart notebook's cells run top to bottom (those that need a kernel's top-level
    await are left out), then a 200-prompt sweep and a multi-image run on a fast simulator."""
    saved = dict(os.environ)
    namespace: dict[str, Any] = {}
    notebook = json.loads((ROOT / "notebooks" / "quickstart.ipynb").read_text(encoding="utf-8"))
    # This process is a script, not a kernel; but after tests/test_notebooks.py has run in it,
    # ipykernel is imported (jupyter_client's kernel specs import it), which progress.in_notebook
    # takes for a kernel: the runs would open a live view with no notebook to show it in.
    patch = pytest.MonkeyPatch()
    patch.setattr(progress, "in_notebook", lambda: False)
    try:
        # A cache of its own, no credentials from the machine (the notebook sets the simulator's).
        os.environ["REPLIBATCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("browser-cache"))
        os.environ.pop("REPLICATE_API_TOKEN", None)
        os.environ.pop("REPLICATE_BASE_URL", None)
        for cell in notebook["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and "await " not in source:
                exec(compile(source, "quickstart", "exec"), namespace)  # noqa: S102 - our notebook
        namespace["server"].close()
        # The account's 600/min would make 200 creates take 20 s: this simulator is unlimited.
        with serve(time_scale=0.01, seed=0, create_rate=None) as fast:
            options = {"base_url": fast.url, "api_token": "r8_offline", "rate_limit": 60_000,
                       "progress": False}
            prompts = pd.DataFrame({"prompt": [f"Prompt {i:03d}: describe colour {i}" for i in range(200)]})
            sweep = rb.run(rb.grid(prompts, temperature=[0.7]), model="replibatch/tiny-llama", **options)
            images = rb.run(
                rb.grid(
                    pd.DataFrame({"prompt": ["a red square", "a blue circle"]}),
                    num_inference_steps=[4, 30],
                    num_outputs=[4],
                    width=[256],
                    height=[256],
                ),
                model="replibatch/pixel-diffusion",
                **options,
            )
        yield {"res": namespace["res"], "sweep": sweep, "images": images}
    finally:
        patch.undo()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _open(browser: Any, tmp_path: Path, html: str, *, dark: bool = False, width: int = 1280) -> Any:
    path = tmp_path / f"page-{abs(hash(html))}.html"
    path.write_text(html, encoding="utf-8")
    page = browser.new_page(
        viewport={"width": width, "height": 800}, color_scheme="dark" if dark else "light"
    )
    page.goto(path.as_uri())
    return page


def _lab_page(fragments: list[str], *, dark: bool) -> str:
    """Fragments as JupyterLab shows outputs: its theme's variables and its body attribute."""
    theme = _lab_dark_css() if dark else ""
    body = 'data-jp-theme-light="false"' if dark else 'data-jp-theme-light="true"'
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><style>{theme}"
        "body { margin: 12px; background: var(--jp-layout-color0, #fff); "
        "color: var(--jp-content-font-color1, #000); }</style></head>"
        f"<body {body}>{''.join(f'<div class=output>{f}</div>' for f in fragments)}</body></html>"
    )


# Contrast of every visible text node against the background actually painted under it
# (translucent backgrounds composited up to the first opaque one), per WCAG 2.1.
_CONTRASTS = """
() => {
  const parse = (c) => {
    const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null;
    const p = m[1].split(/[ ,\\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, bottom) => [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
  const background = (el) => {
    const chain = [];
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) chain.push(c);
      if (c && c[3] >= 1) break;
    }
    let colour = [255, 255, 255, 1];
    for (let i = chain.length - 1; i >= 0; i--) colour = over(chain[i], colour);
    return colour;
  };
  const lum = (c) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const found = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el || el.closest('style')) continue;
    if (!el.checkVisibility() || el.getClientRects().length === 0) continue;
    const bg = background(el);
    const fg = over(parse(getComputedStyle(el).color), bg);
    const [a, b] = [lum(fg) + 0.05, lum(bg) + 0.05];
    found.push({text: node.textContent.trim().slice(0, 40), cls: el.className,
                ratio: Math.max(a, b) / Math.min(a, b), fg: fg.slice(0, 3), bg: bg.slice(0, 3)});
  }
  return found;
}
"""


def _worst(page: Any) -> list[dict[str, Any]]:
    texts = page.evaluate(_CONTRASTS)
    assert len(texts) > 50, "the page shows almost no text: the check would prove nothing"
    return sorted((t for t in texts if t["ratio"] < MIN_CONTRAST), key=lambda t: t["ratio"])


def _views(data: dict[str, Any]) -> list[str]:
    """Every HTML view a notebook shows: comparisons (text, images), browse's detail, the run
    summary and a live view."""
    sweep, images = data["sweep"], data["images"]
    browser = Browser(images)
    live = LiveView(lambda _obj: None, total=10)
    progress = Progress(_NullBar())
    for _, row in pd.concat([sweep.head(3), images.head(2)]).iterrows():
        live.add(row.to_dict(), {"prompt": row["prompt"]}, progress)
    failed = sweep.head(2).assign(status="failed", error="CUDA out of memory")
    return [
        RunSummary.of(data["res"].attrs["replibatch"])._repr_html_(),
        rb.compare(data["res"])._repr_html_(),
        rb.compare(pd.concat([sweep.head(6), failed]), columns="temperature")._repr_html_(),
        rb.compare(images, columns="num_inference_steps")._repr_html_(),
        browser.row_html(0),
        live.html(),
    ]


class _NullBar:
    colour = ""

    def update(self, _n: int) -> None:
        pass

    def set_postfix_str(self, _text: str, refresh: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


def test_comparison_header_and_prompt_column_stay_in_view_over_200_rows(quickstart, browser, tmp_path):
    comparison = rb.compare(quickstart["sweep"], columns="temperature")
    page = _open(browser, tmp_path, comparison.to_html(), width=360)
    box = page.locator(".rb-scroll-box")
    assert page.locator("tbody tr").count() == 200
    # Scroll the comparison's own box to the middle (row ~100) and to the right edge.
    page.evaluate("""() => { const b = document.querySelector('.rb-scroll-box');
                             b.scrollTop = b.scrollHeight / 2; b.scrollLeft = b.scrollWidth; }""")
    assert page.evaluate("document.querySelector('.rb-scroll-box').scrollTop") > 10_000
    frame = box.bounding_box()
    assert frame["y"] + frame["height"] <= 800  # the box is bounded by the viewport
    header = page.locator("thead th").nth(1)
    top = header.bounding_box()
    assert frame["y"] - 1 <= top["y"] <= frame["y"] + 2, (top, frame)
    assert header.inner_text().strip() == "temperature=0.7"
    # The header is painted over the rows that scroll under it (opaque, above them).
    hit = page.evaluate(
        "([x, y]) => document.elementFromPoint(x, y).closest('th')?.innerText",
        [top["x"] + top["width"] / 2, top["y"] + top["height"] / 2],
    )
    assert hit and hit.strip() == "temperature=0.7"
    # The prompt column stays at the box's left edge although the box scrolled right.
    row = page.locator("tbody tr").nth(100).locator("th").first
    assert page.evaluate("document.querySelector('.rb-scroll-box').scrollLeft") > 0
    assert abs(row.bounding_box()["x"] - frame["x"]) <= 2
    # And the footer stays at the bottom of the box.
    footer = page.locator("tfoot td").first.bounding_box()
    assert footer["y"] + footer["height"] <= frame["y"] + frame["height"] + 1
    page.close()


@pytest.mark.parametrize("dark", [True, False], ids=["lab-dark", "lab-light"])
def test_every_view_reads_in_jupyterlab_themes(quickstart, browser, tmp_path, dark):
    page = _open(browser, tmp_path, _lab_page(_views(quickstart), dark=dark))
    background = page.evaluate("getComputedStyle(document.querySelector('.rb-table')).backgroundColor")
    assert (background == "rgb(17, 17, 17)") == dark  # the palette follows Lab's --jp-layout-color0
    worst = _worst(page)
    assert not worst, worst[:5]
    page.close()


@pytest.fixture(scope="module")
def exported(quickstart) -> list[str]:
    """A stand-alone comparison page and a report (built once: plots take a while to draw)."""
    sweep = quickstart["sweep"]
    # Failed rows too: their error text and the footer's failure count have their own colour.
    failed = sweep.head(3).assign(status="failed", error="CUDA out of memory", output=None)
    return [
        rb.compare(pd.concat([sweep.head(40), failed]), columns="temperature").to_html(),
        build_report(pd.concat([sweep.head(20), failed, quickstart["images"]], ignore_index=True)),
    ]


@pytest.mark.parametrize("dark", [True, False], ids=["os-dark", "os-light"])
def test_exported_pages_follow_the_readers_colour_scheme(exported, browser, tmp_path, dark):
    for html in exported:
        page = _open(browser, tmp_path, html, dark=dark)
        text = page.evaluate("getComputedStyle(document.querySelector('.rb-table td')).color")
        assert (text == "rgb(230, 237, 243)") == dark
        worst = _worst(page)
        assert not worst, worst[:5]
        page.close()


def _svg(draw: Any) -> str:
    """Draw on a fresh Agg figure; tag the axes and every point collection for the browser."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    ax = draw(figure.subplots())
    ax.patch.set_gid("rb-axes")
    for i, collection in enumerate(ax.collections):
        collection.set_gid(f"rb-points-{i}")
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    return buffer.getvalue()


def test_no_plot_point_lies_outside_its_axes(quickstart, browser, tmp_path):
    both = pd.concat([quickstart["sweep"], quickstart["images"]], ignore_index=True)
    one_point = quickstart["res"].head(1)  # a single point used to sit on the frame's corner
    draws = [
        lambda ax: plot.cost_vs_latency(both, ax=ax),
        lambda ax: plot.cost_vs_latency(both, logy=False, ax=ax),
        lambda ax: plot.cost_vs_latency(one_point, ax=ax),
        lambda ax: plot.latency(both, ax=ax),
        lambda ax: plot.latency(quickstart["sweep"], x="temperature", ax=ax),
    ]
    svgs = "".join(f"<div class=plot>{_svg(draw).split('?>', 1)[-1]}</div>" for draw in draws)
    page = _open(browser, tmp_path, f"<!DOCTYPE html><html><body>{svgs}</body></html>")
    outside = page.evaluate(
        """() => [...document.querySelectorAll('div.plot')].flatMap((plot, i) => {
             const axes = plot.querySelector('#rb-axes').getBoundingClientRect();
             const points = [...plot.querySelectorAll('[id^="rb-points-"] use')];
             if (!points.length) return [{plot: i, problem: 'no points drawn'}];
             return points.map((p) => p.getBoundingClientRect())
               .filter((r) => r.left < axes.left - 0.5 || r.right > axes.right + 0.5
                              || r.top < axes.top - 0.5 || r.bottom > axes.bottom + 0.5)
               .map((r) => ({plot: i, point: [r.left, r.top, r.right, r.bottom],
                             axes: [axes.left, axes.top, axes.right, axes.bottom]}));
           })"""
    )
    assert not outside, outside[:5]
    page.close()
