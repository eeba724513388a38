import base64
import html
import io
import re

import ipywidgets
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from replibatch._store.filestore import OutputFile
from replibatch._view.browse import ALL, Browser, browse
from replibatch.errors import ConfigurationError

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "files" / "ab" / "abcdef.png"
    path.parent.mkdir(parents=True)
    # Bigger than compare's thumbnails: the browser shows it at full size.
    Image.new("RGB", (900, 700), (10, 120, 200)).save(path)
    return path


@pytest.fixture
def res(image):
    rows = []
    for model in ("acme/text", "acme/image"):
        for temperature in (0.2, 0.8):
            for seed in range(3):
                failed = model == "acme/text" and temperature == 0.8 and seed == 2
                output = OutputFile(image) if model == "acme/image" else f"t={temperature} s={seed} {SCRIPT}"
                rows.append({
                    "prompt": "draw <b>a cat</b>", "temperature": temperature, "seed": seed,
                    "model": model, "output": None if failed else output,
                    "status": "failed" if failed else "succeeded",
                    "error": "boom <b>" if failed else None, "prediction_id": f"p{len(rows)}",
                    "version": "v1", "queue_s": 0.5, "predict_s": 1.5, "latency_s": 2.25,
                    "cost_usd": 0.0042, "cost_basis": "predict_time", "cached": seed == 0,
                })
    df = pd.DataFrame(rows, index=[f"r{i}" for i in range(len(rows))])
    # As run builds it: object, so the stored files keep their OutputFile type under pandas 3.
    df["output"] = pd.Series([row["output"] for row in rows], index=df.index, dtype=object)
    return df


def test_browse_returns_a_widget_backed_by_a_browser(res):
    widget = browse(res, page_size=5)
    assert isinstance(widget, ipywidgets.Widget)
    assert isinstance(widget._replibatch_browser, Browser)
    assert widget._replibatch_browser.detail in widget.children


def test_filters_come_from_parameters_model_and_status(res):
    b = Browser(res)
    # prompt has a single value: nothing to filter on.
    assert list(b.filters) == ["temperature", "seed", "model", "status"]
    assert b.choices["seed"] == [0, 1, 2]
    labels = [label for label, _ in b.filters["status"].options]
    assert labels == ["(all)", "failed (1)", "succeeded (11)"]


def test_pages_and_buttons(res):
    b = Browser(res, page_size=5)
    assert b.page_label.value == "page 1 of 3 · 12 of 12 rows"
    assert [value for _, value in b.rows.options] == [0, 1, 2, 3, 4]
    assert b.prev_button.disabled and not b.next_button.disabled
    b.next_button.click()
    b.next_button.click()
    assert b.page == 2 and [value for _, value in b.rows.options] == [10, 11]
    assert b.next_button.disabled
    b.next_button.click()  # past the end: stays on the last page
    assert b.page == 2
    b.prev_button.click()
    assert b.page == 1 and b.rows.value == 5


def test_filtering_narrows_rows_and_resets_to_the_first_page(res):
    b = Browser(res, page_size=2)
    b.next_button.click()
    b.set_filter("model", "acme/text")
    b.set_filter("temperature", 0.8)
    assert b.page == 0
    assert b.matching_positions() == [3, 4, 5]
    assert b.page_label.value == "page 1 of 2 · 3 of 12 rows"
    b.filters["seed"].value = b.choices["seed"].index(2)  # as a user picking from the dropdown
    assert b.matching_positions() == [5]
    assert "failed" in b.rows.options[0][0]
    assert "boom &lt;b&gt;" in b.detail.value and "no output" in b.detail.value
    b.clear_filters()
    assert all(d.value == ALL for d in b.filters.values()) and len(b.matching_positions()) == 12


def test_no_match_says_so(res):
    b = Browser(res)
    b.set_filter("status", "failed")
    b.set_filter("model", "acme/image")
    assert b.rows.options == ()
    assert "No rows match" in b.detail.value


def test_detail_shows_text_in_full_escaped_with_inputs_timing_and_cost(res):
    res.loc["r0", "output"] = "long " * 500 + SCRIPT
    b = Browser(res)
    b.rows.value = 0
    shown = b.detail.value
    assert SCRIPT not in shown and "<details" not in shown  # whole text, nothing folded
    assert html.escape("long " * 500 + SCRIPT) in shown
    assert html.escape("draw <b>a cat</b>") in shown
    assert "2.25 s" in shown and "$0.0042" in shown and "predict_time" in shown
    assert ">row r0<" in shown


def test_detail_sends_bounded_images_and_the_original_on_demand(res, image):
    b = Browser(res)
    b.set_filter("model", "acme/image")
    # By default the 900 px image crosses the comm shrunk to 768 px, not as the original.
    (shrunk,) = re.findall(r'src="data:image/jpeg;base64,([^"]+)"', b.detail.value)
    with Image.open(io.BytesIO(base64.b64decode(shrunk))) as small:
        assert max(small.size) == 768
    b.full_size.value = True  # "full size": the original bytes
    (payload,) = re.findall(r'src="data:image/png;base64,([^"]+)"', b.detail.value)
    assert base64.b64decode(payload) == image.read_bytes()


def test_selecting_a_row_in_the_list_shows_it(res):
    b = Browser(res, page_size=12)
    b.rows.value = 7
    assert ">row r7<" in b.detail.value
    assert html.escape("acme/image") in b.detail.value


def test_missing_values_can_be_filtered(res):
    res["top_p"] = [0.9, np.nan] * 6
    b = Browser(res)
    assert b.choices["top_p"] == [0.9, None]
    b.set_filter("top_p", np.nan)
    assert b.matching_positions() == [1, 3, 5, 7, 9, 11]


@pytest.mark.parametrize("page_size", [0, -1, 2.5, True])
def test_bad_page_size(res, page_size):
    with pytest.raises(ConfigurationError, match="page_size"):
        browse(res, page_size=page_size)


def test_small_costs_are_plain_decimals(res):
    res.loc["r0", "cost_usd"] = 7.73e-05
    b = Browser(res)
    b.rows.value = 0
    assert "$0.000077" in b.detail.value and "e-05" not in b.detail.value


def test_list_outputs_show_file_names_and_whole_floats_show_as_ints(tmp_path, image):
    from replibatch._store.filestore import OutputFile

    files = [OutputFile(image, url="https://replicate.delivery/x/out-0.png"),
             OutputFile(tmp_path / "out-1.png", url="https://replicate.delivery/x/out-1.png")]
    first = pd.DataFrame([{"prompt": "a", "max_tokens": 40, "model": "acme/image",
                           "output": files, "status": "succeeded"}])
    second = pd.DataFrame([{"prompt": "b", "max_tokens": np.nan, "model": "acme/image",
                            "output": files[:1], "status": "succeeded"}])
    res = pd.concat([first, second], ignore_index=True)
    assert res.loc[0, "max_tokens"] == 40.0  # the concat made the column float
    b = Browser(res)
    labels = [label for label, _ in b.rows.options]
    assert "OutputFile(" not in labels[0] and "url=" not in labels[0] and "[" not in labels[0]
    assert labels[0].endswith("abcdef.png, out-1.png")
    assert "max_tokens=40 " in labels[0] and "40.0" not in labels[0]
    assert [label for label, _ in b.filters["max_tokens"].options][1] == "40 (1)"
    b.rows.value = 0
    assert ">40<" in b.detail.value and "40.0" not in b.detail.value


def test_row_labels_name_only_the_parameters_that_vary(res):
    b = Browser(res.assign(width=np.nan))  # a column with one value says nothing about a row
    label = b.rows.options[0][0]
    assert "width=" not in label and "prompt=" not in label
    assert "temperature=0.2" in label and "seed=0" in label and "acme/text" in label
    assert len({label for label, _ in b.rows.options}) == len(b.rows.options)


def test_search_matches_every_word_in_prompts_and_outputs(res):
    b = Browser(res, page_size=50)
    b.search.value = "T=0.8 S=1"  # case-insensitive, every word
    assert b._matches == [4]
    b.search.value = "cat"  # in the prompt: every row
    assert len(b._matches) == len(res)
    b.search.value = "boom"  # in the error of the failed row
    assert [res.index[p] for p in b._matches] == ["r5"]


def test_row_buttons_step_across_pages(res):
    b = Browser(res, page_size=5)
    assert b.selected == 0
    for _ in range(5):
        b.next_row.click()
    assert b.page == 1 and b.selected == 5 and ">row r5<" in b.detail.value
    b.prev_row.click()
    assert b.page == 0 and b.selected == 4
    b.prev_row.click(), b.prev_row.click(), b.prev_row.click(), b.prev_row.click(), b.prev_row.click()
    assert b.selected == 0  # clamped at the first row


def test_this_prompt_every_model_shows_a_side_by_side_comparison(res):
    b = Browser(res)
    b.all_models.value = True
    shown = b.detail.value
    assert 'class="rb-scroll-box"' in shown  # a comparison table
    assert ">acme/text<" in shown and ">acme/image<" in shown
    assert shown.count("data:image/") == 6  # every image row of the prompt, as thumbnails
    b.all_models.value = False
    assert ">row r0<" in b.detail.value


def test_without_a_live_kernel_the_widget_says_it_needs_one(res):
    bundle = browse(res)._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data  # a live front end renders the widget
    assert "needs a live kernel" in data["text/plain"]
    assert "needs a live kernel" in data["text/html"] and "12 rows" in data["text/html"]


def test_the_no_kernel_note_hides_itself_next_to_a_rendered_widget(res):
    widget = browse(res)
    assert "rb-browser" in widget._dom_classes  # what the note's CSS looks for
    note = widget.note_html()
    assert ".jp-OutputArea:has(.rb-browser) .rb-needs-kernel" in note and "display: none" in note
    assert 'class="rb-root rb-needs-kernel"' in note and "needs a live kernel" in note
