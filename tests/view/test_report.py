"""The HTML report, built from hand-made result frames (no simulator needed)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from replibatch._store.filestore import OutputFile
from replibatch._view.report import atomic_write, build_report, parameter_columns, write_report
from replibatch.errors import ConfigurationError

_PNG = re.compile(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"')


def _result(prompts: list[str], temperatures: list[float], models: list[str]) -> pd.DataFrame:
    rows = []
    clock = 1_700_000_000.0
    for prompt in prompts:
        for model in models:
            for t in temperatures:
                n = len(rows)
                rows.append(
                    {
                        "prompt": prompt,
                        "model": model,
                        "temperature": t,
                        "output": f"answer {n} to {prompt}",
                        "status": "succeeded",
                        "error": None,
                        "queue_s": 0.1,
                        "predict_s": 0.5 + 0.1 * n,
                        "latency_s": 0.7 + 0.1 * n,
                        "cost_usd": 0.0001 * (n + 1),
                        "cost_basis": "predict_time",
                        "cached": False,
                        "submitted_at": clock + 0.1 * n,
                        "completed_at": clock + 0.1 * n + 0.7 + 0.1 * n,
                    }
                )
    return pd.DataFrame(rows)


def test_parameter_columns_finds_sweeps_not_prompts() -> None:
    res = _result(["a", "b", "c"], [0.2, 0.9], ["m/one"])
    res["seed"] = 7  # one value: not swept
    res["row_id"] = range(len(res))  # a value per row: data, not a sweep
    assert parameter_columns(res) == ["prompt", "temperature"]
    assert parameter_columns(res, exclude=["prompt"]) == ["temperature"]


def test_report_sections_columns_and_escaping() -> None:
    res = _result(["<script>alert(1)</script>", "plain"], [0.2, 0.9], ["m/one"])
    res.loc[3, ["status", "error", "output", "cost_usd"]] = ["failed", "CUDA <oom>", None, np.nan]
    page = build_report(res, title="My <run>", source="in.csv")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "My &lt;run&gt;" in page and "in.csv" in page
    # one comparison column per temperature, labelled with the parameter
    assert "temperature=0.2" in page and "temperature=0.9" in page
    assert "4 rows: 3 succeeded, 1 failed" in page
    assert "Rows that did not succeed (1)" in page and "CUDA &lt;oom&gt;" in page
    # latency, cost, cost-vs-latency and timeline plots, as embedded PNGs
    assert len(_PNG.findall(page)) == 4
    assert "http://" not in page.replace("http://www.w3.org", "")  # nothing fetched from outside


def test_two_models_two_numeric_parameters_add_a_heatmap() -> None:
    res = _result(["a", "b"], [0.2, 0.9], ["m/one", "m/two"])
    res["max_tokens"] = [16, 32] * (len(res) // 2)
    page = build_report(res)
    assert len(_PNG.findall(page)) == 5
    assert "m/one · temperature=0.2" in page
    assert page.count("<tr><td>m/") == 2  # one stats row per model


def test_parameters_given_but_not_varying_draw_no_heatmap() -> None:
    res = _result(["a", "b"], [0.2], ["m/one"])
    res["width"] = 256
    page = build_report(res, parameters=["temperature", "width"])
    assert len(_PNG.findall(page)) == 4
    assert 'class="rb-card"' in page  # nothing varies: cards, not a one-column table


def test_all_cached_run_has_no_timeline() -> None:
    res = _result(["a", "b"], [0.2, 0.9], ["m/one"])
    res["cached"] = True
    page = build_report(res)
    assert len(_PNG.findall(page)) == 3
    assert "Run timeline" not in page


def test_image_outputs_are_embedded_as_cards(tmp_path: Path) -> None:
    paths = []
    for i, colour in enumerate(["red", "blue"]):
        path = tmp_path / f"img{i}.png"
        Image.new("RGB", (32, 32), colour).save(path)
        paths.append(OutputFile(path))
    res = _result(["a red square", "a blue square"], [0.5], ["m/draw"])
    res["output"] = pd.Series([[paths[0]], [paths[1]]], dtype=object)
    page = build_report(res)
    assert page.count('class="rb-card"') == 2
    assert page.count('<img class="rb-media" src="data:image/png;base64,') == 2
    assert str(tmp_path) not in page


def test_max_rows_limits_the_comparison_only() -> None:
    res = _result([f"prompt {i}" for i in range(5)], [0.2, 0.9], ["m/one"])
    page = build_report(res, max_rows=2)
    assert "Showing the first 2 of 5 values of prompt." in page
    assert "prompt 1" in page and "prompt 4" not in page
    assert "10 rows: 10 succeeded" in page


def test_report_leaves_pyplot_alone() -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    build_report(_result(["a", "b"], [0.2, 0.9], ["m/one"]))
    assert plt.get_fignums() == before


def test_rejects_what_is_not_a_result_frame() -> None:
    with pytest.raises(ConfigurationError, match="status"):
        build_report(pd.DataFrame({"prompt": ["a"]}))
    with pytest.raises(ConfigurationError, match="empty"):
        build_report(_result(["a"], [0.2], ["m/one"]).iloc[:0])
    with pytest.raises(ConfigurationError, match="nope"):
        build_report(_result(["a"], [0.2], ["m/one"]), index="nope")


def test_write_report_is_atomic_with_normal_permissions(tmp_path: Path) -> None:
    target = write_report(_result(["a"], [0.2], ["m/one"]), tmp_path / "r.html")
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "r.html"
    target.write_text("old", encoding="utf-8")

    def fail(tmp: Path) -> None:
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_cards_and_comparison_cells_draw_a_row_with_the_one_renderer() -> None:
    """A report card and a comparison cell show the same row the same way: the output and its
    badges come from one renderer; the card names the model and leads its error with the status."""
    from replibatch._view.compare import compare

    res = _result(["<b>a</b>", "b"], [0.5], ["m/<one>"])
    res.loc[1, ["status", "error", "output"]] = ["failed", "CUDA <oom>", None]
    res.loc[0, "cached"] = True
    page = build_report(res)
    cards = re.findall(r'<div class="rb-card">(.*?)</div></div></div>', page)
    assert len(cards) == 2
    cell = compare(res, index="prompt", columns=None)._repr_html_()
    # Same output, cost badge (its basis as tooltip) and cached badge as the comparison's cell.
    for fragment in ['<div class="rb-text">answer 0 to &lt;b&gt;a&lt;/b&gt;</div>',
                     '<span class="rb-badge" title="predict_time">$0.00010</span>',
                     '<span class="rb-badge rb-cached">cached</span>']:
        assert fragment in cards[0] and fragment in cell
    assert '<span class="rb-badge">m/&lt;one&gt;</span>' in cards[0]  # cards name the model
    assert '<div class="rb-error">failed: CUDA &lt;oom&gt;</div>' in cards[1]
    assert "rb-badge rb-bad" not in cards[1]  # the status is in the error line, not again as a badge
    assert '<span class="rb-badge rb-bad">failed</span>' in cell  # the cell has it as a badge
