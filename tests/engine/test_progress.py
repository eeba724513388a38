"""The progress bar's colours and text, the run summary object and the live view (no display)."""

from __future__ import annotations

import copy
import io
import json
import math
import re

import pandas as pd
import pytest
from tqdm import tqdm

from replibatch._engine.live import RECENT_ROWS, LiveView
from replibatch._engine.progress import COLOURS, TERMINAL_FORMAT, Progress
from replibatch._engine.runsummary import RunSummary, bar_state

SUMMARY = {
    "rows": 150, "succeeded": 112, "failed": 38, "by_status": {"failed": 18, "skipped_budget": 20},
    "cached": 0, "cost_spent_usd": 0.00042, "cost_saved_usd": 0.0, "cost_unknown": 0,
    "wall_s": 12.5, "rows_per_minute": 720.0,
}


class FakeBar:
    """Records what Progress does to a tqdm bar."""

    def __init__(self) -> None:
        self.colour: str | None = None
        self.colours: list[str] = []
        self.postfix = ""
        self.n = 0
        self.closed = False

    def __setattr__(self, name, value):
        if name == "colour" and value is not None:
            self.__dict__.setdefault("colours", []).append(value)
        super().__setattr__(name, value)

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def update(self, n: int) -> None:
        self.n += n

    def close(self) -> None:
        self.closed = True


def test_bar_state_thresholds():
    assert bar_state(100, 0, 0) == "success"
    assert bar_state(100, 0, 20) == "warning"  # skipped for the budget: a warning
    assert bar_state(100, 9, 0) == "warning"
    assert bar_state(100, 10, 0) == "danger"  # from 10 % failures


def test_bar_turns_warning_then_danger_and_spend_uses_the_money_format():
    bar = FakeBar()
    progress = Progress(bar)
    for _ in range(10):
        progress.tick({"status": "succeeded", "cost_usd": 0.0000068})
    assert bar.colours == [] and bar.postfix == "10 ok $0.000068"  # never "$0.0000"
    progress.tick({"status": "skipped_budget", "cost_usd": math.nan})
    assert bar.colours == [COLOURS["warning"]]
    progress.tick({"status": "failed", "cost_usd": math.nan})
    progress.tick({"status": "timeout", "cost_usd": math.nan})
    assert bar.colours[-1] == COLOURS["danger"]
    assert bar.postfix == "10 ok 2 failed 1 skipped $0.000068" and bar.n == 13


def test_finish_prints_the_summary_once_on_its_own_line():
    lines: list[str] = []
    bar = FakeBar()
    progress = Progress(bar, echo=lines.append)
    progress.tick({"status": "failed"})
    result = progress.finish(SUMMARY)
    assert isinstance(result, RunSummary) and bar.closed
    assert lines == [str(result)] and lines[0].startswith("150 rows: 112 succeeded, 18 failed")
    assert "spent" not in bar.postfix  # the summary is not crammed into the bar


def test_terminal_bar_keeps_a_usable_width_at_80_columns():
    for total, least in [(150, 18), (100_000, 12)]:
        out = io.StringIO()
        bar = tqdm(total=total, file=out, ncols=80, bar_format=TERMINAL_FORMAT, desc="replibatch",
                   mininterval=0)
        progress = Progress(bar, cached=2, compact=True)
        for status in ["succeeded"] * 75 + ["failed"] * 18 + ["skipped_budget"] * 20:
            progress.tick({"status": status, "cost_usd": 0.0000123})
        bar.refresh()
        line = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue().split("\r")[-1]).rstrip()
        cells = line.split("|")[1]
        assert len(line) <= 80 and len(cells) >= least, line
        assert line.endswith("18 failed 20 skipped $0.0014"), line
        bar.close()


def test_run_summary_reads_like_the_dict_and_survives_copies():
    summary = RunSummary(SUMMARY)
    assert summary["succeeded"] == 112 and summary.succeeded == 112 and dict(summary) == SUMMARY
    assert json.loads(json.dumps(summary)) == SUMMARY
    assert summary.state == "danger"
    frame = pd.DataFrame({"a": [1, 2]})
    frame.attrs["replibatch"] = summary
    for copied in (frame.copy(), frame.head(1), frame[["a"]], copy.deepcopy(frame)):
        kept = copied.attrs["replibatch"]
        assert isinstance(kept, RunSummary) and kept == SUMMARY
    assert repr(summary).startswith("RunSummary(150 rows: 112 succeeded")
    assert "'wall_s': " not in repr(summary)


def test_run_summary_renders_as_a_small_table():
    page = RunSummary(SUMMARY)._repr_html_()
    for header, value in [("succeeded", "112"), ("skipped_budget", "20"), ("spent", "$0.00042"),
                          ("wall time", "12.5 s"), ("throughput", "720 rows/min")]:
        assert f"<th scope=\"col\">{header}</th>" in page and f"<td>{value}</td>" in page
    assert "rb-state-danger" in page


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_live_view_keeps_a_few_rows_and_redraws_at_most_twice_a_second():
    shown: list[str] = []
    clock = Clock()
    live = LiveView(lambda obj: shown.append(obj._repr_html_()), total=100_000, clock=clock)
    progress = Progress(FakeBar(), live=live)
    for i in range(10_000):
        clock.now = i * 0.001  # 10,000 rows in 10 s
        status = "failed" if i % 1000 == 998 else "succeeded"
        error = f"boom {i}" if status == "failed" else None
        progress.tick({"status": status, "output": f"out <{i}>", "error": error,
                       "latency_s": 0.5, "cost_usd": 0.0001}, {"prompt": f"prompt {i}"})
    assert len(live.recent) == RECENT_ROWS and len(live.failures) == 3  # memory stays flat
    assert 19 <= live.draws <= 21  # every 0.5 s of the clock, not per row
    live.draw()
    last = shown[-1]
    assert "out &lt;9999&gt;" in last and "boom 9998" in last and "out <" not in last
    assert "prompt 9994" not in last  # only the latest rows
    progress.finish(SUMMARY)
    assert "rb-summary-table" in shown[-1]  # replaced by the summary at the end


@pytest.mark.parametrize("finished", [1, 3])
def test_live_view_draws_the_last_row_of_a_run(finished):
    shown: list[object] = []
    live = LiveView(shown.append, total=finished, clock=lambda: 0.0)
    progress = Progress(FakeBar(), live=live)
    for _ in range(finished):
        progress.tick({"status": "succeeded", "output": "x"}, {"prompt": "p"})
    assert f"{finished:,} of {finished:,} finished" in shown[-1]._repr_html_()


def test_ipykernel_imported_without_a_running_kernel_is_not_a_notebook(monkeypatch):
    # jupyter_client imports ipykernel to find its kernel spec (the notebook tests do so in this
    # process); a run after that must keep the terminal bar, not open a live view with no front end.
    import sys
    import types

    from replibatch._engine.progress import in_notebook

    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    assert not in_notebook()
