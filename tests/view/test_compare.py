import base64
import html
import io
import re
import wave

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from replibatch._store.filestore import OutputFile
from replibatch._view.compare import Comparison, compare
from replibatch.errors import ConfigurationError

DATA_URI = re.compile(r'src="data:([^;"]+);base64,([^"]+)"')
SCRIPT = "<script>alert(1)</script>"


def StoredPath(path) -> OutputFile:  # noqa: N802 - the file store's outputs
    return OutputFile(path)


def _png(path, size=(64, 48), colour=(200, 30, 30)) -> bytes:
    Image.new("RGB", size, colour).save(path)
    return path.read_bytes()


def _wav(path) -> bytes:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x01" * 800)
    return path.read_bytes()


def _frame(rows):
    """A result frame as `run` builds it: `output` stays object (pandas 3 would make an all-text
    column "str", which drops the OutputFile type of stored files)."""
    df = pd.DataFrame(rows)
    df["output"] = pd.Series([row["output"] for row in rows], index=df.index, dtype=object)
    return df


def _row(prompt, model, output, **overrides):
    row = {
        "prompt": prompt,
        "model": model,
        "output": output,
        "status": "succeeded",
        "error": None,
        "prediction_id": "p",
        "version": "v",
        "queue_s": 0.5,
        "predict_s": 1.0,
        "latency_s": 1.234,
        "cost_usd": 0.00123,
        "cost_basis": "predict_time 1.0 s × gpu-t4 $0.000225/s",
        "cached": False,
    }
    row.update(overrides)
    return row


@pytest.fixture
def res(tmp_path):
    small = tmp_path / "files" / "ab" / "abcd.png"
    small.parent.mkdir(parents=True)
    _png(small)
    return _frame(
        [
            _row("a cat", "acme/text", SCRIPT),
            _row("a cat", "acme/image", StoredPath(small), cached=True),
            _row("<b>dog</b>", "acme/text", None, status="failed", error="CUDA <oom>",
                 latency_s=np.nan, cost_usd=np.nan),
            _row("<b>dog</b>", "acme/image", str(small)),
        ]
    )


def test_frame_is_the_pivot_in_order_of_first_appearance(res):
    comparison = compare(res)
    assert isinstance(comparison, Comparison)
    frame = comparison.frame
    assert frame.index.name == "prompt" and frame.columns.name == "model"
    assert frame.index.tolist() == ["a cat", "<b>dog</b>"]
    assert frame.columns.tolist() == ["acme/text", "acme/image"]
    assert frame.loc["a cat", "acme/text"] == SCRIPT
    assert pd.isna(frame.loc["<b>dog</b>", "acme/text"])  # the failed row has no output
    sparse = compare(res.drop(index=3)).frame
    assert sparse.loc["<b>dog</b>", "acme/image"] is None  # no row landed there


def test_every_text_is_escaped(res):
    res.loc[0, "model"] = "acme/<i>text</i>"
    page = compare(res).to_html()
    for raw in (SCRIPT, "<b>dog</b>", "<i>text</i>", "CUDA <oom>"):
        assert raw not in page
        assert html.escape(raw) in page
    assert "<script" not in page.lower()


def test_media_are_embedded_and_survive_the_file_store(res, tmp_path):
    original = (tmp_path / "files" / "ab" / "abcd.png").read_bytes()
    out = tmp_path / "moved" / "comparison.html"
    out.parent.mkdir()
    compare(res).to_html(out)
    for file in (tmp_path / "files" / "ab").iterdir():
        file.unlink()
    page = out.read_text(encoding="utf-8")
    embedded = DATA_URI.findall(page)
    assert len(embedded) == 1  # the store's file; the plain string naming the same file is text
    for mime, payload in embedded:
        assert mime == "image/png"
        assert base64.b64decode(payload) == original  # small: embedded byte for byte
    assert page.count("<img") == 1


def test_big_images_are_shrunk_for_the_page(tmp_path):
    big = tmp_path / "big.png"
    noise = np.random.default_rng(0).integers(0, 255, (1200, 1600, 3), dtype=np.uint8)
    Image.fromarray(noise).save(big)
    res = _frame([_row("p", "m", OutputFile(big))])
    page = compare(res, max_px=256).to_html()
    ((mime, payload),) = DATA_URI.findall(page)
    thumbnail = Image.open(io.BytesIO(base64.b64decode(payload)))
    assert mime == "image/jpeg" and thumbnail.format == "JPEG"
    assert max(thumbnail.size) == 256
    assert thumbnail.size[0] / thumbnail.size[1] == pytest.approx(4 / 3, rel=0.02)
    assert len(page) < big.stat().st_size / 10


def test_audio_json_urls_and_missing_files(tmp_path):
    audio = tmp_path / "speech.wav"
    audio_bytes = _wav(audio)
    res = pd.DataFrame(
        [
            _row("audio", "m", OutputFile(audio)),
            _row("json", "m", {"label": "<cat>", "score": 0.9}),
            _row("url", "m", "https://replicate.delivery/x/out.png?a=1&b=<2>"),
            _row("js", "m", "javascript:alert(1)"),
            _row("gone", "m", OutputFile(tmp_path / "deleted.png")),
        ]
    )
    page = compare(res).to_html()
    ((mime, payload),) = DATA_URI.findall(page)
    assert mime == "audio/wav" and base64.b64decode(payload) == audio_bytes
    assert "<audio" in page
    assert html.escape('"label": "<cat>"') in page
    assert 'href="https://replicate.delivery/x/out.png?a=1&amp;b=&lt;2&gt;"' in page
    assert 'href="javascript' not in page and "javascript:alert(1)" in page
    assert "missing file:" in page


def test_several_images_in_one_output_form_a_thumbnail_grid(tmp_path):
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    for i, path in enumerate(paths):
        _png(path, colour=(i * 80, 0, 0))
    page = compare(_frame([_row("p", "m", [OutputFile(p) for p in paths])])).to_html()
    assert 'class="rb-grid"' in page
    assert len(DATA_URI.findall(page)) == 3
    # Each thumbnail can take focus, which is what enlarges it (CSS :focus, no script).
    assert page.count('<img tabindex="0" class="rb-media"') == 3


def test_badges_show_latency_cost_status_and_cache(res):
    page = compare(res).to_html()
    assert "1.23 s" in page and "$0.0012" in page
    assert '<span class="rb-badge rb-bad">failed</span>' in page
    assert page.count('rb-badge rb-cached">cached<') == 1
    assert html.escape("predict_time 1.0 s × gpu-t4 $0.000225/s") in page  # cost basis tooltip
    bare = compare(res, badges=False, footer=False).to_html()
    assert "1.23 s" not in bare and 'class="rb-badge rb-cached"' not in bare
    assert "CUDA &lt;oom&gt;" in bare  # the error of a failed row is always shown


def test_long_text_folds_into_details_without_losing_any():
    text = "word " * 300 + "END"
    page = compare(_frame([_row("p", "m", text)]), max_text=100).to_html()
    assert "<details" in page and "more characters" in page
    (body,) = [
        b for b in re.findall(r'<div class="rb-text">(.*?)</div>', page, re.S) if "word" in b
    ]
    visible = re.sub(r"<summary>.*?</summary>|<[^>]+>", "", body)
    assert html.unescape(visible) == text
    assert "<details" not in compare(_frame([_row("p", "m", "short")])).to_html()


def test_rows_sharing_a_cell_are_all_shown_and_labelled(res):
    samples = pd.DataFrame(
        [_row("p", "m", f"answer {i}", sample=i, temperature=0.5) for i in range(3)]
    )
    comparison = compare(samples)
    assert comparison.frame.loc["p", "m"] == ("answer 0", "answer 1", "answer 2")
    page = comparison.to_html()
    assert page.count('class="rb-item"') == 3
    assert "sample=2" in page and "temperature=0.5" not in page  # only what differs


def test_index_may_be_several_columns_and_columns_may_be_none():
    res = pd.DataFrame(
        [_row("p", "m", f"{t}-{s}", temperature=t, seed=s) for t in (0.2, 0.8) for s in (1, 2)]
    )
    comparison = compare(res, index=["temperature", "seed"])
    assert comparison.frame.index.names == ["temperature", "seed"]
    assert comparison.frame.loc[(0.8, 1), "m"] == "0.8-1"
    single = compare(res, index="seed", columns=None)
    assert single.frame.columns.tolist() == ["output"]
    assert single.frame.loc[1, "output"] == ("0.2-1", "0.8-1")


def test_version_hashes_are_shortened_in_headers_only():
    model = "acme/img:" + "0123456789abcdef" * 4
    page = compare(_frame([_row("p", model, "x")])).to_html()
    assert ">acme/img:01234567…</th>" in page
    assert f'title="{model}"' in page


def test_repr_html_is_a_fragment_with_its_style(res, tmp_path):
    fragment = compare(res)._repr_html_()
    assert fragment.startswith("<style>") and "<table" in fragment and "<html" not in fragment
    path = tmp_path / "out.html"
    page = compare(res).to_html(path)
    assert page.startswith("<!DOCTYPE html>") and path.read_text(encoding="utf-8") == page


@pytest.mark.parametrize(
    "kwargs, missing",
    [({"index": "nope"}, "nope"), ({"columns": "engine"}, "engine"),
     ({"values": "answer"}, "answer"), ({"index": ["prompt", "seed"]}, "seed")],
)
def test_missing_column_is_named(res, kwargs, missing):
    with pytest.raises(ConfigurationError, match=f"'{missing}'"):
        compare(res, **kwargs)


def test_same_column_as_index_and_columns_is_rejected(res):
    with pytest.raises(ConfigurationError, match="both"):
        compare(res, index="model", columns="model")


def test_small_costs_in_badges_are_plain_decimals():
    page = compare(_frame([_row("p", "m", "text", cost_usd=7.73e-05)])).to_html()
    assert ">$0.000077</span>" in page
    assert "e-05" not in page


def test_gallery_images_are_never_stretched_beyond_their_natural_size(tmp_path):
    paths = [tmp_path / "one.png"]
    _png(paths[0], size=(256, 256))
    page = compare(_frame([_row("p", "m", [OutputFile(p) for p in paths])])).to_html()
    assert 'class="rb-gallery"' in page
    rules = dict(re.findall(r"([^{}]*?)\{([^}]*)\}", page))
    child = next(body for selector, body in rules.items() if ".rb-gallery > *" in selector)
    declarations = {
        name.strip(): value.strip()
        for name, value in (d.split(":", 1) for d in child.split(";") if ":" in d)
    }
    grow = declarations.get("flex-grow") or declarations.get("flex", "0 1 auto").split()[0]
    assert grow == "0"  # a lone 256 px image is not grown to fill the cell
    assert declarations.get("flex", "").split()[2:] in (["auto"], [])  # basis: its own width
    assert declarations.get("max-width") == "100%"  # but it may shrink to fit
    # No rule forces an explicit width on gallery items or embedded images.
    for selector, body in rules.items():
        if "rb-gallery" in selector or "img" in selector:
            widths = re.findall(r"(?:^|;)\s*width\s*:\s*([^;]+)", body)
            assert all(w.strip() == "auto" for w in widths), selector


def test_parameter_headers_keep_the_parameter_name():
    rows = [_row("p", "m", f"out {t}", temperature=t) for t in (0.0, 0.7, 1.4)]
    view = compare(pd.DataFrame(rows), columns="temperature")
    assert view.column_labels() == ["temperature=0.0", "temperature=0.7", "temperature=1.4"]
    assert ">temperature=0.7</th>" in view.to_html()
    both = compare(pd.DataFrame([_row("p", "acme/a", "x", steps=4)]), columns=["model", "steps"])
    assert both.column_labels() == ["acme/a · steps=4"]  # the model reads as itself


def test_footer_gives_mean_cost_median_latency_and_failures_per_column(res):
    view = compare(res)
    text, image = view.footer()
    assert (text.rows, text.failed) == (2, 1) and (image.rows, image.failed) == (2, 0)
    assert text.mean_cost_usd == pytest.approx(0.00123)  # the failed row's cost is unknown
    assert image.p50_latency_s == pytest.approx(1.234)
    page = view.to_html()
    assert "<tfoot>" in page and ">1 of 2 failed<" in page and "p50 1.23 s" in page


def test_sort_orders_rows_by_a_metric():
    rows = [_row(p, m, "x", latency_s=lat) for p, m, lat in
            [("slow", "a", 9.0), ("slow", "b", 7.0), ("fast", "a", 1.0), ("mid", "a", 4.0),
             ("none", "a", np.nan)]]
    frame = pd.DataFrame(rows)
    assert compare(frame, sort="latency_s").frame.index.tolist() == ["fast", "mid", "slow", "none"]
    assert compare(frame, sort="-latency_s").frame.index.tolist() == ["slow", "mid", "fast", "none"]
    with pytest.raises(ConfigurationError, match="sort column 'nope'"):
        compare(frame, sort="nope")
    with pytest.raises(ConfigurationError, match="not numeric"):
        compare(frame, sort="model")


def test_identical_outputs_are_marked():
    rows = [_row("p", "a", "same"), _row("p", "b", "same"), _row("p", "c", "other"),
            _row("q", "a", "x"), _row("q", "b", "y")]
    page = compare(pd.DataFrame(rows)).to_html()
    assert page.count('class="rb-badge rb-same"') == 2
    assert ">same as b<" in page and ">same as a<" in page


def test_the_table_scrolls_in_its_own_bounded_box(res):
    page = compare(res, max_height="420px").to_html()
    assert '<div class="rb-scroll-box" style="max-height: 420px">' in page
    css = page.split("<style>", 1)[1].split("</style>", 1)[0]
    assert re.search(r"\.rb-scroll-box thead th \{[^}]*position: sticky; top: 0", css)
    assert re.search(r"\.rb-scroll-box tbody th:first-child \{[^}]*position: sticky; left: 0", css)


def test_whole_numbers_that_pandas_made_float_read_as_ints():
    steps = pd.DataFrame([_row("p", "m", "x", steps=4), _row("p", "m", "y", steps=30),
                          _row("p", "text", "z")])  # the text row has no steps: the column is float
    assert steps["steps"].dtype == float
    assert compare(steps, columns="steps").column_labels() == ["steps=4", "steps=30", "steps=—"]


def test_text_naming_a_local_file_is_shown_as_text_never_embedded(tmp_path):
    """A model's text output (or any plain string) that is a local path is not read from disk:
    only files of the store (OutputFile) are embedded."""
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    image = tmp_path / "photo.png"
    _png(image)
    res = _frame([_row("a", "m", str(secret)), _row("b", "m", str(image)),
                        _row("c", "m", [str(image)])])
    page = compare(res).to_html()
    assert DATA_URI.findall(page) == [] and "<img" not in page
    assert "OPENSSH" not in page and base64.b64encode(b"-----BEGIN").decode() not in page
    assert html.escape(str(secret)) in page
