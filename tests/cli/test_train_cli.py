"""``replibatch train``: a sweep from a table file, on the built-in simulator."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from replibatch._cli.main import main

ZIP = Path(__file__).resolve().parents[2] / "data" / "fine_tune" / "sea-stories.zip"


def test_train_offline_sweeps_params_and_writes_the_results(tmp_path, capsys):
    sweep = tmp_path / "sweep.csv"
    pd.DataFrame({"train_data": [str(ZIP)]}).to_csv(sweep, index=False)
    out = tmp_path / "trained.csv"
    code = main(["train", str(sweep), "--trainer", "replibatch/tiny-llama", "--destination",
                 "replibatch-sim/sea-llama", "--param", "steps=5,10", "--files", "train_data",
                 "--offline", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    written = pd.read_csv(out)
    assert list(written["steps"]) == [5, 10] and (written["status"] == "succeeded").all()
    assert written["version"].str.startswith("replibatch-sim/sea-llama:").all()
    assert written["version"].nunique() == 2


def test_train_reports_a_bad_destination_in_one_line(tmp_path, capsys):
    sweep = tmp_path / "sweep.csv"
    pd.DataFrame({"steps": [1]}).to_csv(sweep, index=False)
    code = main(["train", str(sweep), "--trainer", "replibatch/tiny-llama",
                 "--destination", "not-a-model", "--offline", "--quiet"])
    assert code == 2 and "destination" in capsys.readouterr().err
