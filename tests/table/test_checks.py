"""Issue #12: everything that can be checked is checked before a cent is spent.

Each test asserts the error text and what the simulator counted: zero requests, or zero creates
where the model lookup (which brings the schema) is legitimately needed first.
"""

from __future__ import annotations

import ast
import logging
import os
import re
import sys
import time
from importlib.metadata import packages_distributions
from pathlib import Path

import httpx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replibatch as rb
from replibatch._cli import cache as cli_cache
from replibatch._cli import run as cli_run
from replibatch._cli.main import main
from replibatch._table.frame import ADDED_COLUMNS, is_result_frame
from replibatch._table.schema import InputSchema, shape_input
from replibatch._table.summary import format_summary
from replibatch.errors import ConfigurationError
from replibatch.sim import default_models, serve

TOKEN = "r8_test_not_a_real_token_0000000000000000"
TEXT = "replibatch/tiny-llama"
IMAGE = "replibatch/pixel-diffusion"
DEPLOYMENT = "deployments/replibatch/tiny-llama-prod"
ROOT = Path(__file__).resolve().parents[2]


def go(df, sim, **options):
    options.setdefault("progress", False)
    return rb.run(df, api_token=TOKEN, base_url=sim.url, **options)


def sent_input(sim, prediction_id: str) -> dict:
    """The input the simulator recorded for a prediction (what was actually sent)."""
    reply = httpx.get(f"{sim.url}/v1/predictions/{prediction_id}",
                      headers={"Authorization": f"Bearer {TOKEN}"})
    return reply.json()["input"]


def version_of(ref: str) -> str:
    return next(m.version_id for m in default_models() if m.ref == ref)


# -- 1. the version's input schema ------------------------------------------------------------


def test_rows_the_schema_refuses_end_error_and_nothing_is_sent_for_them(sim):
    df = pd.DataFrame({
        "prompt": ["ok", "t", "big", None, "typo"],
        "temperature": [0.5, "abc", 0.5, 0.5, 0.5],
        "max_tokens": [8, 8, 5000, 8, 8],
        "temprature": [None, None, None, None, 0.3],
    })
    res = go(df, sim, model=TEXT, cache=False)
    assert list(res["status"]) == ["succeeded", "error", "error", "error", "error"]
    assert list(res["error"].iloc[1:]) == [
        "invalid input: input.temperature: 'abc' is not a number",
        "invalid input: input.max_tokens: 5000 is more than the maximum 1024",
        "invalid input: input.prompt: required, and the row has no value for it",
        ("invalid input: input.temprature: the model has no input named 'temprature' "
         "(its inputs: max_tokens, prompt, seed, temperature)"),
    ]
    assert sim.stats.creates == 1  # only the valid row; the lookup brought the schema
    summary = res.attrs["replibatch"]
    assert summary["invalid"] == 4
    assert "4 error (4 invalid input, not sent)" in format_summary(summary)


def test_integers_are_sent_as_ints_and_numbers_keep_their_floats(sim):
    # pandas makes both columns float (a gap in max_tokens); the schema says which is which.
    df = pd.DataFrame({"prompt": ["a", "b"], "temperature": [1.0, 0.5], "max_tokens": [24, None]})
    res = go(df, sim, model=TEXT, cache=False)
    assert (res["status"] == "succeeded").all()
    first = sent_input(sim, res["prediction_id"].iloc[0])
    assert type(first["max_tokens"]) is int and first["max_tokens"] == 24
    assert type(first["temperature"]) is float and first["temperature"] == 1.0


def test_deployments_and_pinned_versions_are_checked_with_their_schema(sim):
    df = pd.DataFrame({"prompt": ["x", "y"], "temperature": [9.0, 0.1]})
    for model in (DEPLOYMENT, f"{TEXT}:{version_of(TEXT)}"):
        sim.stats.reset()
        res = go(df, sim, model=model, cache=False)
        assert list(res["status"]) == ["error", "succeeded"], model
        assert res["error"].iloc[0] == "invalid input: input.temperature: 9.0 is more than the maximum 2"
        assert sim.stats.creates == 1


def test_enum_and_multiple_of_come_from_cog_component_schemas():
    image = next(m for m in default_models() if m.ref == IMAGE)
    schema = InputSchema.from_openapi(image.openapi_schema)
    assert schema is not None
    _, problems = shape_input({"prompt": "p", "scheduler": "fast", "width": 100}, schema)
    assert problems == [
        "input.scheduler: 'fast' is not one of 'DDIM', 'K_EULER', 'DPMSolverMultistep'",
        "input.width: 100 is not a multiple of 8",
    ]
    # no schema (bare version ids, models that publish none): nothing is checked here
    assert shape_input({"width": 100.0, "anything": "x"}, None) == ({"width": 100, "anything": "x"}, [])
    assert InputSchema.from_openapi({"components": {}}) is None


# -- 2. files only where files are meant --------------------------------------------------------


def test_a_prompt_naming_an_existing_file_is_sent_as_text(sim, tmp_path):
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----")
    res = go(pd.DataFrame({"prompt": [str(secret)]}), sim, model=TEXT, cache=False)
    assert res["status"].iloc[0] == "succeeded"
    assert sent_input(sim, res["prediction_id"].iloc[0])["prompt"] == str(secret)
    assert sim.stats.requests.get("POST /v1/files", 0) == 0


def test_a_path_is_a_file_where_the_schema_says_uri_or_files_opts_in(sim, tmp_path, monkeypatch):
    from PIL import Image

    picture = tmp_path / "in.png"
    Image.new("RGB", (8, 8), "red").save(picture)
    monkeypatch.chdir(tmp_path)
    df = pd.DataFrame({"prompt": ["a", "b"], "image": [str(picture), "gone.png"],
                       "width": 64, "height": 64})
    res = go(df, sim, model=IMAGE, cache=False)
    assert res["status"].iloc[0] == "succeeded"
    assert sent_input(sim, res["prediction_id"].iloc[0])["image"].startswith("data:image/png;base64,")
    assert res["error"].iloc[1] == (
        "invalid input: input.image: 'gone.png' is not a URL, and no such local file exists"
    )
    assert sim.stats.creates == 1
    # files= opts a column in: its cells must then be existing files, checked in planning
    sim.stats.reset()
    with pytest.raises(ConfigurationError,
                       match=r"column 'image', row 1: 'gone.png' is not an existing local file"):
        go(df, sim, model=IMAGE, files=["image"])
    assert sim.stats.requests == {}


def test_a_path_for_a_pinned_version_is_keyed_by_the_file_content(sim, tmp_path):
    from PIL import Image

    picture = tmp_path / "in.png"
    Image.new("RGB", (8, 8), "red").save(picture)
    df = pd.DataFrame({"prompt": ["a"], "image": [str(picture)], "width": 64, "height": 64})
    pinned = f"{IMAGE}:{version_of(IMAGE)}"
    assert go(df, sim, model=pinned)["status"].iloc[0] == "succeeded"
    assert go(df, sim, model=pinned)["cached"].iloc[0]  # same path, same bytes: from the cache
    Image.new("RGB", (8, 8), "blue").save(picture)
    sim.stats.reset()
    again = go(df, sim, model=pinned)
    assert not again["cached"].iloc[0] and sim.stats.creates == 1  # new bytes: a new result


# -- 3. columns are the user's ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "options", "message"),
    [
        (pd.DataFrame({"prompt": ["a"], "status": ["draft"]}), {"model": TEXT},
         "column 'status' collides with the result column of the same name"),
        (pd.DataFrame({"prompt": ["a"], "output": ["mine"]}), {"model": TEXT},
         "rename it (e.g. df.rename(columns={'output': 'output_in'}))"),
        (pd.DataFrame({"prompt": ["a"], "cost_usd": [1.0]}), {"model": TEXT},
         "column 'cost_usd' collides"),
        (pd.DataFrame({"prompt": ["a"], "model": [IMAGE]}), {"model": TEXT},
         "the frame has a 'model' column and model='replibatch/tiny-llama' was given too"),
        (pd.DataFrame([["a", "b"]], columns=pd.Index(["prompt", None], dtype=object)),
         {"model": TEXT}, "column None has a NoneType name, but model input names are strings"),
        (pd.DataFrame({"prompt": ["a"], None: ["b"]}), {"model": TEXT},  # pandas 3 makes it NaN
         "column nan has a float name"),
        (pd.DataFrame({"prompt": ["a"], 0: ["b"]}), {"model": TEXT},
         "column 0 has a int name"),
        (pd.DataFrame([["a"]], columns=pd.MultiIndex.from_tuples([("in", "prompt")])),
         {"model": TEXT}, "the frame has MultiIndex columns"),
    ],
)
def test_columns_that_would_be_lost_or_mangled_are_refused(sim, frame, options, message):
    with pytest.raises(ConfigurationError) as caught:
        go(frame, sim, **options)
    assert message in str(caught.value)
    assert sim.stats.requests == {}


def test_a_result_frame_runs_again_from_the_cache(sim):
    res = go(pd.DataFrame({"prompt": ["a", "b"]}), sim, model=TEXT)
    sim.stats.reset()
    again = go(res, sim, model=TEXT)
    assert again["cached"].all() and sim.stats.creates == 0
    assert list(again.columns) == list(res.columns)
    from_file = go(res.drop(columns=["cost_basis"]).reset_index(drop=True), sim)  # model column
    assert from_file["cached"].all()


def test_the_cli_refuses_a_result_column_in_the_input(tmp_path, monkeypatch, capsys, sim):
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"prompt": ["a"], "status": ["todo"]}).to_csv("in.csv", index=False)
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_BASE_URL", sim.url)
    assert main(["run", "in.csv", "--model", TEXT, "--quiet"]) == 2
    assert "the input has a column 'status', which is also a result column" in capsys.readouterr().err
    assert sim.stats.requests == {}


# -- 4. cells that cannot be sent ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("fine \ud800 not", r"text holds a lone surrogate '\\ud800' at character 5"),
        ({"k\udfff": 1}, r"text at \[key\] holds a lone surrogate"),
        (["ok", "\ud83d"], r"text at \[1\] holds a lone surrogate"),
        (2**70, r"integer 1180591620717411303424 is beyond 64 bits"),
        (float("inf"), r"float inf cannot be sent as JSON"),
        (object(), r"a builtins.object value cannot be sent as JSON"),
    ],
)
def test_cells_that_cannot_be_sent_are_refused_naming_row_and_column(sim, cell, message):
    df = pd.DataFrame({"prompt": ["a", "b"], "extra": pd.Series([None, cell], dtype=object)})
    df.index = ["r0", "r1"]
    with pytest.raises(ConfigurationError, match=r"column 'extra', row 'r1': " + message):
        go(df, sim, model=TEXT)
    assert sim.stats.requests == {}  # refused before the model lookup


# -- 5. checked before the run starts -----------------------------------------------------------


@pytest.fixture
def real_cli(tmp_path, monkeypatch, sim):
    """The CLI pointed at the simulator as a real account (so its requests are counted)."""
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"prompt": ["a", "b"]}).to_csv("in.csv", index=False)
    monkeypatch.setenv("REPLICATE_API_TOKEN", TOKEN)
    monkeypatch.setenv("REPLICATE_BASE_URL", sim.url)
    return sim


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc, unwritable even for root")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "/proc/results.parquet"], "--out '/proc/results.parquet': cannot write in '/proc'"),
        (["--report", "/proc/report.html"], "--report '/proc/report.html': cannot write in '/proc'"),
        (["--out", "results.xlsx"], "--out 'results.xlsx': cannot tell the format from .xlsx"),
        (["--out", "no/such/dir/r.csv"], "the directory 'no/such/dir' does not exist"),
    ],
)
def test_output_paths_are_checked_before_anything_is_sent(real_cli, capsys, args, message):
    assert main(["run", "in.csv", "--model", TEXT, "--quiet", *args]) == 2
    assert message in capsys.readouterr().err
    assert real_cli.stats.requests == {}


def test_an_unusable_cache_directory_is_refused_first_in_cli_words(real_cli, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("REPLIBATCH_CACHE_DIR", str(blocker / "cache"))
    assert main(["run", "in.csv", "--model", TEXT, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is not usable" in err and "--no-cache" in err and "cache=False" not in err
    assert real_cli.stats.requests == {}
    with pytest.raises(ConfigurationError, match="cache=False"):  # Python keeps Python words
        go(pd.DataFrame({"prompt": ["a"]}), real_cli, model=TEXT)
    assert real_cli.stats.requests == {}


def test_the_token_and_the_model_reference_are_checked_first(sim):
    df = pd.DataFrame({"prompt": ["a"]})
    with pytest.raises(ConfigurationError, match="No Replicate API token"):
        rb.run(df, model=TEXT, base_url=sim.url, progress=False)
    with pytest.raises(ConfigurationError, match="cannot parse model reference 'Acme/Model!'"):
        go(df, sim, model="Acme/Model!")
    assert sim.stats.requests == {}


def test_files_on_the_cli_names_columns_of_the_input(tmp_path, monkeypatch, capsys):
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli_run, "OFFLINE_SIM_OPTIONS", {**cli_run.OFFLINE_SIM_OPTIONS, "time_scale": 0.01})
    Image.new("RGB", (8, 8), "red").save("in.png")
    pd.DataFrame({"prompt": ["a"], "image": ["in.png"], "width": [64], "height": [64]}).to_csv(
        "in.csv", index=False)
    assert main(["run", "in.csv", "--model", IMAGE, "--offline", "--files", "picture"]) == 2
    assert "--files names 'picture', which is not a column of the input" in capsys.readouterr().err
    assert main(["run", "in.csv", "--model", IMAGE, "--offline", "--files", "image", "--quiet",
                 "--out", "r.jsonl"]) == 0
    assert '"status": "succeeded"' in Path("r.jsonl").read_text()


# -- 6. the offline path from a plain install ---------------------------------------------------


def _runtime_imports() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "replibatch").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"replibatch", "__future__"}


def test_every_package_replibatch_imports_is_a_runtime_dependency():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    block = re.search(r"^dependencies = \[(.*?)\]", text, re.S | re.M).group(1)
    declared = {re.split(r"[<>=!~\[; ]", item.strip().strip('",'))[0].lower()
                for item in block.splitlines() if item.strip().startswith('"')}
    owners = packages_distributions()
    version_gated = {"exceptiongroup"}  # imported only on Python < 3.11 (the stdlib has it)
    missing = {
        module for module in _runtime_imports() - version_gated
        if not {d.lower() for d in owners.get(module, [module])} & declared
    }
    assert "jsonschema" in declared  # what the simulator (sim/cog.py) and schema.py use
    assert missing == set()


# -- 7. small mends -----------------------------------------------------------------------------


@pytest.mark.parametrize("port", [99999, -1, 65536])
def test_an_out_of_range_port_is_a_value_error_and_exit_2(port, capsys):
    with pytest.raises(ValueError, match="port must be 0–65535"):
        serve(port=port)
    assert main(["sim", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert "port must be 0–65535" in err and "Traceback" not in err


def test_a_client_leaving_a_stream_early_logs_no_traceback(caplog):
    with serve(time_scale=1.0, seed=0) as server:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        body = httpx.post(f"{server.url}/v1/predictions", headers=headers, json={
            "version": version_of(TEXT), "input": {"prompt": "x", "max_tokens": 200}, "stream": True,
        }).json()
        caplog.set_level(logging.DEBUG)
        with httpx.stream("GET", body["urls"]["stream"], headers=headers) as reply:
            next(reply.iter_lines())  # the first event, then hang up
        deadline = time.monotonic() + 5
        # the stream handler notices on its next write: wait for the prediction to end
        while time.monotonic() < deadline:
            got = httpx.get(f"{server.url}/v1/predictions/{body['id']}", headers=headers).json()
            if got["status"] == "succeeded":
                break
            time.sleep(0.05)
        time.sleep(0.1)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


def test_cache_clear_reclaims_files_no_result_references(sim, monkeypatch):
    res = go(pd.DataFrame({"prompt": ["red", "blue"], "width": 64, "height": 64}), sim, model=IMAGE)
    files = [Path(str(out[0])) for out in res["output"]]
    assert all(path.is_file() for path in files)
    assert rb.clear_cache(model=IMAGE) == 2
    assert all(path.is_file() for path in files)  # fresh: spared for a concurrent run
    old = time.time() - 3600
    for path in files:
        os.utime(path, (old, old))
    assert rb.clear_cache(model="nobody/else") == 0  # nothing matched, files reclaimed anyway
    assert not any(path.exists() for path in files)
    assert rb.cache_info().files == 0


def test_a_bare_cache_clear_asks_on_a_terminal(sim, monkeypatch, capsys):
    go(pd.DataFrame({"prompt": ["a"]}), sim, model=TEXT)
    monkeypatch.setattr(cli_cache, "_interactive", lambda: True)
    asked = []
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or "n")
    assert main(["cache", "clear"]) == 0
    assert "nothing deleted" in capsys.readouterr().out and rb.cache_info().entries == 1
    assert "delete all 1 cached results" in asked[0]
    assert main(["cache", "clear", "--yes"]) == 0 and len(asked) == 1
    assert rb.cache_info().entries == 0


def test_a_bare_version_id_runs_offline_on_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli_run, "OFFLINE_SIM_OPTIONS", {**cli_run.OFFLINE_SIM_OPTIONS, "time_scale": 0.01})
    pd.DataFrame({"prompt": ["a"]}).to_csv("in.csv", index=False)
    assert main(["run", "in.csv", "--model", version_of(TEXT), "--offline", "--quiet",
                 "--out", "r.jsonl"]) == 0
    assert '"status": "succeeded"' in Path("r.jsonl").read_text()


# -- the property: planning over random frames --------------------------------------------------

_NAMES = st.sampled_from(["prompt", "temperature", "seed", "note", "status", "output", "model",
                          "cost_usd", 0, None])
_CELLS = st.one_of(
    st.none(),
    st.text(max_size=8),  # includes lone surrogates
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)


@st.composite
def frames(draw):
    names = draw(st.lists(_NAMES, min_size=1, max_size=4, unique=True))
    rows = draw(st.integers(min_value=1, max_value=3))
    data = {name: pd.Series([draw(_CELLS) for _ in range(rows)], dtype=object) for name in names}
    df = pd.DataFrame(data)
    df.index = draw(st.permutations(list(range(10, 10 + rows))))
    return df


@pytest.fixture(scope="module")
def shared_sim():
    with serve(time_scale=0.01, seed=0, create_rate=None, read_rate=None) as server:
        yield server


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(df=frames())
def test_planning_random_frames_refuses_with_zero_requests_or_keeps_the_frame(shared_sim, df):
    shared_sim.stats.reset()
    before = df.copy()
    try:
        res = go(df, shared_sim, model=TEXT, cache=False)
    except ConfigurationError as exc:
        message = str(exc)
        assert shared_sim.stats.requests == {}, message
        named = [repr(c) for c in df.columns] + ["MultiIndex"]
        assert any(name in message for name in named), message
        return
    pd.testing.assert_frame_equal(df, before)  # the input frame is not touched
    pd.testing.assert_index_equal(res.index, df.index)
    assert list(res.columns[: len(df.columns)]) == list(df.columns)
    # a drawn frame may look like a result frame (a "status" of "error"...): those columns are
    # then the run's to overwrite; every other column comes back as it was
    own = [c for c in df.columns if not (is_result_frame(df) and c in ADDED_COLUMNS)]
    pd.testing.assert_frame_equal(res[own], df[own], check_dtype=False)
    assert set(res["status"]) <= {"succeeded", "error"}
    # nothing refused by the schema was created: one create per row that did not end "invalid"
    invalid = res["error"].fillna("").str.startswith("invalid input").sum()
    assert shared_sim.stats.creates == len(df) - invalid
