"""The command line, called in-process: offline runs against the simulator, files, errors, cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from replibatch._cli import run as cli_run
from replibatch._cli.common import CliError
from replibatch._cli.files import read_frame, write_frame
from replibatch._cli.main import main
from replibatch._cli.params import parse_duration, parse_param, parse_value
from replibatch._store.filestore import OutputFile

DATA = Path(__file__).resolve().parents[2] / "data"
TINY = "replibatch/tiny-llama"
FAST = ["--rate-limit", "60000", "--quiet"]


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private cache, no token, a fast simulator and tmp_path as the working directory."""
    monkeypatch.setenv("REPLIBATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    monkeypatch.delenv("REPLICATE_BASE_URL", raising=False)
    monkeypatch.setattr(cli_run, "OFFLINE_SIM_OPTIONS", {**cli_run.OFFLINE_SIM_OPTIONS, "time_scale": 0.01})
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "in.csv"
    pd.DataFrame({"prompt": ["say hi, please", 'a "quoted" café']}).to_csv(path, index=False)
    return path


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("replibatch: error: ")
    return lines[0]


# -- pure helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3", 3), ("-2", -2), ("0.25", 0.25), ("1e-3", 0.001), ("true", True), ("False", False),
     ("K_EULER", "K_EULER"), ("nan", "nan"), ("inf", "inf"), ("0x10", "0x10")],
)
def test_parse_value_types(text: str, expected: object) -> None:
    value = parse_value(text)
    assert value == expected and type(value) is type(expected)


def test_parse_param_splits_like_csv() -> None:
    assert parse_param("temperature=0.2,0.9") == ("temperature", [0.2, 0.9])
    assert parse_param('style="warm, soft", cold') == ("style", ["warm, soft", "cold"])
    assert parse_param("seed=1") == ("seed", [1])


@pytest.mark.parametrize("text", ["temperature", "=1,2", "t=", "t=1,,2", "9x=1", "t=1,1"])
def test_parse_param_rejects_malformed(text: str) -> None:
    with pytest.raises(CliError) as info:
        parse_param(text)
    assert info.value.code == 2


def test_parse_param_keeps_true_and_one_apart() -> None:
    assert parse_param("flag=true,1") == ("flag", [True, 1])


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 604800), ("12h", 43200), ("30m", 1800), ("45s", 45), ("90", 90), ("1.5h", 5400)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["7x", "", "d7", "-1d"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(CliError):
        parse_duration(text)


def test_read_frame_keeps_na_like_text_and_reads_jsonl(tmp_path: Path) -> None:
    csv_path = tmp_path / "p.csv"
    csv_path.write_text("prompt,seed\nNA,1\nNone,\n", encoding="utf-8")
    df = read_frame(csv_path)
    assert df["prompt"].tolist() == ["NA", "None"]
    assert df["seed"].isna().tolist() == [False, True]

    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"prompt": "a", "tags": [1, 2]}\n\n{"prompt": "b"}\n', encoding="utf-8")
    df = read_frame(jsonl)
    assert df["prompt"].tolist() == ["a", "b"] and df["tags"][0] == [1, 2]

    jsonl.write_text('{"prompt": "a"}\n{oops\n', encoding="utf-8")
    with pytest.raises(CliError, match="line 2"):
        read_frame(jsonl)


def test_write_frame_mixed_output_column(tmp_path: Path) -> None:
    image = tmp_path / "out.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n")
    df = pd.DataFrame(
        {
            "prompt": ["a", "b", "c", "d"],
            "output": ["text", [OutputFile(image, url="https://x/y.png")], {"k": [1, 2]}, float("nan")],
            "latency_s": [0.5, 1.0, float("nan"), 2.0],
        },
        index=[10, 11, 12, 13],
    )
    for name in ("r.parquet", "r.csv"):
        write_frame(df, tmp_path / name)
        back = read_frame(tmp_path / name)
        assert list(back.columns) == ["prompt", "output", "latency_s"]
        assert back["output"][0] == "text"
        assert json.loads(back["output"][1]) == [str(image)]
        assert json.loads(back["output"][2]) == {"k": [1, 2]}
        assert pd.isna(back["output"][3])
    write_frame(df, tmp_path / "r.jsonl")
    records = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["output"] for r in records] == ["text", [str(image)], {"k": [1, 2]}, None]
    assert records[2]["latency_s"] is None
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_write_frame_failure_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "r.parquet"
    target.write_bytes(b"old results")

    def broken(self: pd.DataFrame, path: str, **kwargs: object) -> None:
        Path(path).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken)
    with pytest.raises(OSError):
        write_frame(pd.DataFrame({"a": [1]}), target)
    assert target.read_bytes() == b"old results"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.parquet"]


# -- runs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["parquet", "csv", "jsonl"])
def test_offline_run_writes_each_format(prompts: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"results.{suffix}"
    code = main(["run", str(prompts), "--model", TINY, "--param", "temperature=0.2,0.9",
                 "--offline", "--out", str(out), *FAST])
    assert code == 0
    res = read_frame(out)
    assert len(res) == 4
    assert res["status"].eq("succeeded").all()
    assert res["prompt"].tolist() == ["say hi, please"] * 2 + ['a "quoted" café'] * 2
    assert res["temperature"].tolist() == [0.2, 0.9, 0.2, 0.9]
    assert res["output"].map(lambda v: isinstance(v, str) and len(v) > 0).all()
    assert (res["cost_usd"] > 0).all()


def test_grid_sizes_and_summary(prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "grid.jsonl"
    code = main(["run", str(prompts), "--model", TINY, "--model", "replibatch/official-chat",
                 "--param", "temperature=0.1,0.5", "--param", "max_tokens=4,8,16", "--repeat", "2",
                 "--offline", "--out", str(out), "--rate-limit", "60000"])
    assert code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 * 2 * 2 * 3 * 2
    combos = {(r["prompt"], r["model"], r["temperature"], r["max_tokens"], r["sample"]) for r in records}
    assert len(combos) == len(records)
    stdout = capsys.readouterr().out
    assert "48 rows: 48 succeeded" in stdout and f"wrote 48 rows to {out}" in stdout


def test_inputs_limits_what_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"prompt": "x", "note": "not an input"}\n', encoding="utf-8")
    code = main(["run", str(path), "--model", TINY, "--inputs", "prompt", "--param", "max_tokens=3",
                 "--offline", "--out", "r.jsonl", *FAST])
    assert code == 0
    (record,) = [json.loads(line) for line in Path("r.jsonl").read_text().splitlines()]
    assert record["status"] == "succeeded" and record["note"] == "not an input"
    assert record["output_token_count"] <= 3


def test_second_run_is_served_from_cache_and_no_cache_skips_it(prompts: Path) -> None:
    base = ["run", str(prompts), "--model", TINY, "--offline", *FAST]
    assert main([*base, "--out", "a.jsonl"]) == 0
    assert main([*base, "--out", "b.jsonl"]) == 0
    assert main([*base, "--out", "c.jsonl", "--no-cache"]) == 0
    cached = {name: [json.loads(line)["cached"] for line in Path(name).read_text().splitlines()]
              for name in ("a.jsonl", "b.jsonl", "c.jsonl")}
    assert cached == {"a.jsonl": [False, False], "b.jsonl": [True, True], "c.jsonl": [False, False]}


def test_every_row_invalid_exits_2(prompts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(prompts), "--model", TINY, "--param", "temperature=5", "--offline",
                 "--out", "r.csv", *FAST])
    assert code == 2
    captured = capsys.readouterr()
    assert "2 rows: 0 succeeded, 2 error (2 invalid input, not sent)" in captured.out
    assert "every row was refused by the model's input schema, so nothing was sent" in captured.err
    assert "input.temperature: 5 is more than the maximum 2" in captured.out  # even with --quiet
    assert len(read_frame("r.csv")) == 2


def test_report_embeds_images(tmp_path: Path) -> None:
    path = tmp_path / "images.csv"
    pd.DataFrame({"prompt": ["a red square", "a blue circle"]}).to_csv(path, index=False)
    code = main(["run", str(path), "--model", "replibatch/pixel-diffusion", "--param", "width=64",
                 "--param", "height=64", "--param", "num_inference_steps=1", "--offline",
                 "--out", "images.jsonl", "--report", "report.html", *FAST])
    assert code == 0
    records = [json.loads(line) for line in Path("images.jsonl").read_text().splitlines()]
    files = [Path(p) for r in records for p in r["output"]]
    assert len(files) == 2 and all(f.is_file() and f.suffix == ".png" for f in files)
    page = Path("report.html").read_text(encoding="utf-8")
    assert page.count('class="rb-media" src="data:image/png;base64,') == 2
    assert page.count('src="data:image/png;base64,') >= 4  # the outputs plus the plots
    assert "a red square" in page and str(files[0]) not in page  # embedded, not linked


def test_readme_command(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = len(pd.read_csv(DATA / "prompts.csv"))
    assert 40 <= rows <= 60
    code = main(["run", str(DATA / "prompts.csv"), "--model", TINY, "--param", "temperature=0.2,0.9",
                 "--offline", "--out", "results.parquet"])
    assert code == 0
    res = pd.read_parquet(isolated / "results.parquet")
    assert len(res) == 2 * rows and res["status"].eq("succeeded").all()
    assert f"{2 * rows} rows: {2 * rows} succeeded" in capsys.readouterr().out


def test_sample_files() -> None:
    text = pd.read_csv(DATA / "prompts.csv", keep_default_na=False)
    images = pd.read_csv(DATA / "image_prompts.csv", keep_default_na=False)
    assert list(text.columns) == ["prompt"] and list(images.columns) == ["prompt"]
    assert 15 <= len(images) <= 30
    assert text["prompt"].is_unique and images["prompt"].is_unique
    joined = "\n".join(text["prompt"])
    assert "<b>bold</b> claims" in joined and '"' in joined and "," in joined
    assert any(not p.isascii() for p in text["prompt"])
    assert (DATA / "README.md").is_file()


# -- errors ------------------------------------------------------------------------------------


def test_missing_token_stops_before_anything(
    prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(prompts), "--model", TINY, "--out", "r.csv"])
    assert code == 2
    line = _one_error_line(capsys)
    assert "REPLICATE_API_TOKEN" in line and "--offline" in line
    assert not (tmp_path / "cache").exists() and not Path("r.csv").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "missing.csv", "--model", TINY, "--offline"], "no such file"),
        (["run", "prompts.xlsx", "--model", TINY, "--offline"], "unknown extension .xlsx"),
        (["run", "{in}", "--model", TINY, "--inputs", "prompt,nope", "--offline"], "'nope'"),
        (["run", "{in}", "--model", TINY, "--param", "temperature", "--offline"], "no '='"),
        (["run", "{in}", "--model", TINY, "--param", "t=1", "--param", "t=2", "--offline"], "twice"),
        (["run", "{in}", "--model", TINY, "--out", "r.xlsx", "--offline"], ".parquet, .csv or .jsonl"),
        (["run", "{in}", "--model", TINY, "--out", "nodir/r.csv", "--offline"], "does not exist"),
        (["run", "{in}", "--model", "meta/llama-99", "--offline"], "replibatch/tiny-llama"),
        (["run", "{in}", "--model", "Not A Model", "--offline"], "cannot parse"),
        (["run", "{in}", "--offline"], "--model"),
        (["run", "{in}", "--model", TINY, "--param", "prompt=a,b", "--offline"], "also a column"),
        (["cache"], "cache info"),
        (["cache", "clear", "--older-than", "soon"], "7d"),
    ],
)
def test_errors_are_one_line(
    args: list[str], needle: str, prompts: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([str(prompts) if a == "{in}" else a for a in args])
    assert code == 2
    assert needle in _one_error_line(capsys)


def test_unreadable_and_empty_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "header.csv").write_text("prompt\n", encoding="utf-8")
    cases = [("empty.csv", "is empty"), ("bad.parquet", "could not read"), ("header.csv", "no rows")]
    for name, needle in cases:
        assert main(["run", name, "--model", TINY, "--offline"]) == 2
        assert needle in _one_error_line(capsys)


def test_argparse_errors_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "x.csv", "--concurrency", "0"]) == 2
    assert "greater than 0" in capsys.readouterr().err
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("replibatch ")
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(word in text for word in ("run", "cache", "sim"))
    assert main(["sim", "--help"]) == 0
    assert "--port" in capsys.readouterr().out


# -- cache -------------------------------------------------------------------------------------


def test_cache_info_and_clear(prompts: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["run", str(prompts), "--model", TINY, "--param", "temperature=0.2,0.9", "--offline", *FAST]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    info = capsys.readouterr().out
    assert str(tmp_path / "cache") in info and "4 results" in info and f"{TINY}: 4" in info

    assert main(["cache", "clear", "--older-than", "7d"]) == 0
    assert "removed 0 cached results older than 7d" in capsys.readouterr().out
    assert main(["cache", "clear", "--model", "replibatch/other"]) == 0
    assert "removed 0" in capsys.readouterr().out
    assert main(["cache", "clear", "--model", TINY]) == 0
    assert f"removed 4 cached results of {TINY}" in capsys.readouterr().out
    assert main(["cache", "info"]) == 0
    assert "0 results" in capsys.readouterr().out


def test_no_token_ever_printed(
    prompts: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", "r8_test_secret_value")
    assert main(["run", str(prompts), "--model", TINY, "--offline", "--out", "r.jsonl"]) == 0
    captured = capsys.readouterr()
    assert "r8_test_secret_value" not in captured.out + captured.err
    assert "r8_test_secret_value" not in Path("r.jsonl").read_text()
    assert os.environ["REPLICATE_API_TOKEN"] == "r8_test_secret_value"
