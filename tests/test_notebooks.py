"""Execute every notebook in notebooks/ against the simulator and check what its story claims.

Each notebook runs top to bottom in a fresh "python3" kernel with cwd = notebooks/, a per-cell
timeout, no Replicate token in the environment and REPLIBATCH_CACHE_DIR pointed at a temp dir
(the kernel inherits the environment, so every run starts with an empty cache). After the
notebook's own cells, a probe cell (added in memory, never saved) reports facts about the
notebook's variables as JSON, so the checks are about real results, not about printed text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

pytestmark = pytest.mark.timeout(240)  # a kernel start plus a whole notebook per first test

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(path.name for path in NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 90  # seconds; the slowest cell (a 36-row sweep) takes about 4 s
PROBE_MARKER = "REPLIBATCH_PROBE "

# Probes run in the notebook's kernel after its last cell; each prints one JSON object.
PROBES: dict[str, str] = {
    "quickstart.ipynb": """
import json as _json, os as _os
_p = {
    "res_columns": list(res.columns),
    "res_status": sorted(set(res["status"])),
    "res_cached": res["cached"].tolist(),
    "res_outputs_nonempty": bool(res["output"].map(lambda o: isinstance(o, str) and len(o) > 0).all()),
    "res_costs_positive": bool((res["cost_usd"] > 0).all()),
    "default_tokens_row": int(res.loc[3, "output_token_count"]),
    "explicit_max_tokens": [int(v) for v in df["max_tokens"].dropna()],
    "summary": res.attrs["replibatch"],
    "again_cached": again["cached"].tolist(),
    "again_same_output": bool((again["output"] == res["output"]).all()),
    "again_summary": again.attrs["replibatch"],
    "res_cost_total": float(res["cost_usd"].sum()),
    "cold_cached": cold["cached"].tolist(),
    "cold_status": sorted(set(cold["status"])),
    "chat_status": sorted(set(chat["status"])),
    "chat_output_tokens": [int(v) for v in chat["output_token_count"]],
    "chat_cost_basis": chat["cost_basis"].tolist(),
    "cache_dir": str(info.directory),
    "cache_by_model": dict(info.entries_by_model),
    "env_cache_dir": _os.environ["REPLIBATCH_CACHE_DIR"],
    "creates": server.stats.creates,
}
""",
    "fine_tune_sweep.ipynb": """
import json as _json
_mean = scored.groupby(["steps", "learning_rate"])["score_sea"].mean()
_p = {
    "trained_status": trained["status"].tolist(),
    "trained_versions": trained["version"].tolist(),
    "trained_cost_positive": bool((trained["cost_usd"] > 0).all()),
    "again_cached": again["cached"].tolist(),
    "again_versions": again["version"].tolist(),
    "training_creates": server.trainings.stats.creates,
    "uploads": server.stats.requests.get("POST /v1/files", 0),
    "res_rows": len(res),
    "res_status": sorted(set(res["status"])),
    "res_models": sorted(set(res["model"])),
    "res_cost_positive": bool((res["cost_usd"] > 0).all()),
    "mean_by_grid": {f"{s}/{lr}": float(v) for (s, lr), v in _mean.items()},
    "base_score": float(sum(w in sea_only for t in base["output"] for w in words(t))),
    "board_order": [list(i) for i in board.frame.index],
}
""",
    "parameter_sweep.ipynb": """
import json as _json
_t0 = res[res["temperature"] == 0.0].groupby(["prompt", "max_tokens"])["output"].nunique()
_hot = res[res["temperature"] == 1.4].groupby(["prompt", "max_tokens"])["output"].nunique()
_p = {
    "sweep_rows": len(sweep),
    "sweep_columns": list(sweep.columns),
    "samples": sorted(set(int(s) for s in sweep["sample"])),
    "estimate_index": [str(i) for i in est.index],
    "estimate_rows": int(est.loc["total", "rows"]),
    "estimate_cost": float(est.loc["total", "cost_usd"]),
    "tight_status": tight["status"].value_counts().to_dict(),
    "tight_errors": tight.loc[tight["status"] == "skipped_budget", "error"].tolist(),
    "tight_skipped": [int(i) for i in tight.index[tight["status"] == "skipped_budget"]],
    "res_status": sorted(set(res["status"])),
    "res_not_cached": [int(i) for i in res.index[~res["cached"]]],
    "res_cached_count": int(res["cached"].sum()),
    "tight_succeeded": int((tight["status"] == "succeeded").sum()),
    "predict_by_tokens": res.groupby("max_tokens")["predict_s"].mean().tolist(),
    "t0_distinct_outputs": sorted(set(int(n) for n in _t0)),
    "hot_distinct_outputs": sorted(set(int(n) for n in _hot)),
}
""",
    "model_comparison.ipynb": """
import json as _json, os as _os
_by = {m: g.set_index("prompt")["output"] for m, g in text.groupby("model")}
_means = text.groupby("model")[["cost_usd", "predict_s"]].mean()
_p = {
    "text_rows": len(text),
    "text_models": sorted(set(text["model"])),
    "text_status": sorted(set(text["status"])),
    "deployment_same_as_model": bool(
        (_by["deployments/replibatch/tiny-llama-prod"] == _by["replibatch/tiny-llama"]).all()
    ),
    "official_differs": bool((_by["replibatch/official-chat"] != _by["replibatch/tiny-llama"]).all()),
    "dearest": _means["cost_usd"].idxmax(),
    "fastest": _means["predict_s"].idxmin(),
    "basis_by_model": {m: g["cost_basis"].iloc[0] for m, g in text.groupby("model")},
    "image_status": sorted(set(images["status"])),
    "image_outputs": [list(o) for o in images["output"]],
    "image_steps": [int(s) for s in images["num_inference_steps"]],
    "everything_rows": len(everything),
    "env_cache_dir": _os.environ["REPLIBATCH_CACHE_DIR"],
}
""",
    "evaluate.ipynb": """
import json as _json
_tokens = res.groupby(["model", "temperature"])["output_token_count"].mean()
_numbered = scored["prompt"].str.contains(r"\\d")
_shots = looked.set_index(["prompt", "num_inference_steps"])["score_judge"]
_truncated = before["output_token_count"] == 64
_p = {
    "rows": len(res),
    "status": sorted(set(res["status"])),
    "tokens": {f"{m}|{t}": float(v) for (m, t), v in _tokens.items()},
    "score_error_rows": [int(i) for i in scored.index[scored["score_keeps_the_number_error"].notna()]],
    "numbered_rows": [int(i) for i in scored.index[_numbered]],
    "judge_scores": sorted(set(float(v) for v in judged["score_judge"])),
    "judge_costs_positive": bool((judged["judge_cost_usd"] > 0).all()),
    "judge_second_cached": int(again["judge_cached"].sum()),
    "vision": {f"{p}|{s}": float(v) for (p, s), v in _shots.items()},
    "best_rows": [int(i) for i in judged.index[rb.ratings(judged, "best") == 1.0]],
    "hot_chat": [int(i) for i in hot_chat[:3]],
    "stars": rb.ratings(judged, "stars").dropna().to_dict(),
    "board_index": [list(map(str, k)) for k in board.frame.index],
    "board_rows": board.frame["rows"].tolist(),
    "board_win_sum": float(board.frame["win_rate"].sum()),
    "changed_rows": [int(i) for i in changes.index[changes["changed"]]],
    "truncated_rows": [int(i) for i in before.index[_truncated]],
    "only_different_rows": len(
        rb.compare(both, index="prompt", columns="max_tokens", only_different=True).frame
    ),
}
""",
}


@dataclass
class Executed:
    """A notebook after execution: its cells with outputs and what the probe reported."""

    nb: Any
    probe: dict[str, Any]
    cache_dir: Path

    def cell(self, fragment: str) -> Any:
        """The one code cell whose source contains `fragment`."""
        matches = [c for c in self.nb.cells if c.cell_type == "code" and fragment in c.source]
        assert len(matches) == 1, f"{len(matches)} code cells contain {fragment!r}"
        return matches[0]

    def data(self, fragment: str, mime: str) -> list[str]:
        """Every `mime` payload the cell containing `fragment` displayed."""
        return [o["data"][mime] for o in self.cell(fragment).outputs if mime in o.get("data", {})]

    def text(self, fragment: str) -> str:
        """What the cell containing `fragment` printed."""
        return "".join(o.get("text", "") for o in self.cell(fragment).outputs if o.output_type == "stream")


def _execute(name: str, cache_dir: Path) -> Executed:
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    probe = PROBES.get(name, "import json as _json\n_p = {}\n")
    nb.cells.append(new_code_cell(probe + f"\nprint({PROBE_MARKER!r} + _json.dumps(_p, default=str))"))
    with pytest.MonkeyPatch.context() as patch:
        # The kernel inherits this environment: an empty cache of its own, and no real account.
        patch.setenv("REPLIBATCH_CACHE_DIR", str(cache_dir))
        patch.delenv("REPLICATE_API_TOKEN", raising=False)
        patch.delenv("REPLICATE_BASE_URL", raising=False)
        client = NotebookClient(
            nb,
            timeout=CELL_TIMEOUT,
            kernel_name="python3",
            resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
        )
        client.execute()
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    line = next(x for x in printed.splitlines() if x.startswith(PROBE_MARKER))
    nb.cells.pop()
    return Executed(nb, json.loads(line[len(PROBE_MARKER):]), cache_dir)


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Executed]:
    """Runs each notebook once for the whole module (a failure is re-raised to every caller)."""
    runs: dict[str, Executed | BaseException] = {}

    def get(name: str) -> Executed:
        if name not in runs:
            try:
                runs[name] = _execute(name, tmp_path_factory.mktemp(name.split(".")[0]))
            except Exception as exc:  # noqa: BLE001 - kept to re-raise, not swallowed
                runs[name] = exc
        outcome = runs[name]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return get


# --- every notebook ------------------------------------------------------------------------------


def test_the_three_notebooks_are_there() -> None:
    assert {"quickstart.ipynb", "parameter_sweep.ipynb", "model_comparison.ipynb",
            "evaluate.ipynb"} <= set(NOTEBOOKS)
    assert set(PROBES) <= set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_clean(name: str) -> None:
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "outputs were saved"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    # The simulator is the first code cell, set up the way a user would, so a real run drops it.
    first = code[0].source
    assert "replibatch.sim.serve(" in first
    assert 'os.environ["REPLICATE_BASE_URL"] = server.url' in first
    assert "r8_" in first and "REPLICATE_API_TOKEN" in first
    assert not any("replibatch.sim" in c.source for c in code[1:])
    assert "For a real run" in "".join(c.source for c in nb.cells if c.cell_type == "markdown")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_without_errors(name: str, executed: Callable[[str], Executed]) -> None:
    run = executed(name)
    for cell in run.nb.cells:
        if cell.cell_type != "code":
            continue
        assert cell.execution_count is not None
        kinds = {o.output_type for o in cell.outputs}
        assert "error" not in kinds, cell.source
        stderr = "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stderr")
        assert "Traceback" not in stderr and "Warning" not in stderr, (cell.source, stderr)


# --- quickstart ----------------------------------------------------------------------------------


def test_quickstart_first_run_adds_result_columns(executed: Callable[[str], Executed]) -> None:
    run = executed("quickstart.ipynb")
    p = run.probe
    assert p["res_columns"][:2] == ["prompt", "max_tokens"]
    for column in ["model", "output", "status", "error", "prediction_id", "version", "queue_s",
                   "predict_s", "latency_s", "cost_usd", "cost_basis", "cached"]:
        assert column in p["res_columns"]
    assert p["res_status"] == ["succeeded"]
    assert p["res_cached"] == [False] * 4
    assert p["res_outputs_nonempty"] and p["res_costs_positive"]
    # The row whose max_tokens is missing ran at the model's default, past every explicit limit.
    assert p["default_tokens_row"] > max(p["explicit_max_tokens"])
    assert p["summary"]["rows"] == 4 and p["summary"]["succeeded"] == 4
    assert p["summary"]["cost_spent_usd"] > 0
    assert "gpu-t4" in run.text('print(res.loc[0, "cost_basis"])')


def test_quickstart_rerun_comes_from_the_cache(executed: Callable[[str], Executed]) -> None:
    run = executed("quickstart.ipynb")
    p = run.probe
    assert "predictions created by the re-run: 0" in run.text("creates_before")
    assert p["again_cached"] == [True] * 4
    assert p["again_same_output"]
    assert p["again_summary"]["cached"] == 4
    assert p["again_summary"]["cost_spent_usd"] == 0
    assert p["again_summary"]["cost_saved_usd"] == pytest.approx(p["res_cost_total"])
    # The last HTML output is the cell's table (the run's live view / summary come first).
    table = run.data("creates_before", "text/html")[-1]
    assert table.count("<td>True</td>") == 4


def test_quickstart_accessor_arun_and_cache_info(executed: Callable[[str], Executed]) -> None:
    run = executed("quickstart.ipynb")
    p = run.probe
    assert p["cold_status"] == ["succeeded"] and p["cold_cached"] == [False, False]
    assert p["chat_status"] == ["succeeded"]
    assert all(n > 0 for n in p["chat_output_tokens"])
    assert all("token" in basis for basis in p["chat_cost_basis"])
    # The cache is the test's temp dir: 4 + 2 tiny-llama results, 4 official-chat results.
    assert Path(p["cache_dir"]) == run.cache_dir == Path(p["env_cache_dir"])
    assert p["cache_by_model"] == {"replibatch/tiny-llama": 6, "replibatch/official-chat": 4}
    assert p["creates"] == 10
    assert str(run.cache_dir) in run.text("info = rb.cache_info()")


# --- parameter sweep ----------------------------------------------------------------------------


def test_sweep_grid_and_estimate(executed: Callable[[str], Executed]) -> None:
    p = executed("parameter_sweep.ipynb").probe
    assert p["sweep_rows"] == 2 * 3 * 3 * 2
    assert p["sweep_columns"] == ["prompt", "temperature", "max_tokens", "sample"]
    assert p["samples"] == [0, 1]
    assert p["estimate_index"] == ["replibatch/tiny-llama", "total"]
    assert p["estimate_rows"] == 36 and p["estimate_cost"] > 0


def test_sweep_budget_skips_then_rerun_pays_only_for_the_rest(executed: Callable[[str], Executed]) -> None:
    p = executed("parameter_sweep.ipynb").probe
    assert set(p["tight_status"]) == {"succeeded", "skipped_budget"}
    assert p["tight_status"]["skipped_budget"] > 0
    assert all(error.startswith("max_cost") for error in p["tight_errors"])
    assert p["res_status"] == ["succeeded"]
    assert p["res_cached_count"] == p["tight_succeeded"]
    assert p["res_not_cached"] == p["tight_skipped"]


def test_sweep_plots_and_comparison(executed: Callable[[str], Executed]) -> None:
    run = executed("parameter_sweep.ipynb")
    for call in ("rb.plot.heatmap(", "rb.plot.latency(", "rb.plot.timeline("):
        assert len(run.data(call, "image/png")) == 1, call
    # More tokens, more predict time (the heatmap's story).
    by_tokens = run.probe["predict_by_tokens"]
    assert by_tokens == sorted(by_tokens)
    # Temperature 0 repeats itself; temperature 1.4 gives two different samples.
    assert run.probe["t0_distinct_outputs"] == [1]
    assert run.probe["hot_distinct_outputs"] == [2]
    rendered = "".join(run.data("by_temperature = rb.compare(", "text/html"))
    assert "sample=0" in rendered and "sample=1" in rendered and "cached" in rendered


# --- model comparison ---------------------------------------------------------------------------


def test_comparison_text_models(executed: Callable[[str], Executed]) -> None:
    run = executed("model_comparison.ipynb")
    p = run.probe
    assert p["text_rows"] == 9 and p["text_status"] == ["succeeded"]
    assert p["text_models"] == sorted(
        ["replibatch/tiny-llama", "replibatch/official-chat", "deployments/replibatch/tiny-llama-prod"]
    )
    assert p["deployment_same_as_model"] and p["official_differs"]
    assert p["dearest"] == p["fastest"] == "replibatch/official-chat"
    assert "token" in p["basis_by_model"]["replibatch/official-chat"]
    assert "predict_time" in p["basis_by_model"]["replibatch/tiny-llama"]
    html = "".join(run.data('rb.compare(text, index="prompt", columns="model")', "text/html"))
    assert "official-chat" in html and "tiny-llama-prod" in html


def test_comparison_images_are_local_files_shown_inline(executed: Callable[[str], Executed]) -> None:
    run = executed("model_comparison.ipynb")
    p = run.probe
    assert p["image_status"] == ["succeeded"] and sorted(p["image_steps"]) == [4, 4, 30, 30]
    for paths in p["image_outputs"]:
        assert len(paths) == 1
        path = Path(paths[0])
        assert path.is_relative_to(run.cache_dir) and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = "".join(run.data("rb.compare(images", "text/html"))
    assert html.count("data:image/png;base64") == 4
    single = "".join(run.data('images.loc[1, "output"][0]', "text/html"))
    assert single.count("data:image/png;base64") == 1


def test_comparison_cost_plots_and_browser(executed: Callable[[str], Executed]) -> None:
    run = executed("model_comparison.ipynb")
    assert run.probe["everything_rows"] == 13
    assert len(run.data("rb.plot.cost(everything)", "image/png")) == 1
    assert len(run.data("rb.plot.cost_vs_latency(everything)", "image/png")) == 1
    assert run.data("rb.browse(everything)", "application/vnd.jupyter.widget-view+json")
    assert Path(run.probe["env_cache_dir"]) == run.cache_dir
    assert os.environ.get("REPLIBATCH_CACHE_DIR") != str(run.cache_dir)  # restored after the run


# --- evaluate -----------------------------------------------------------------------------------


def test_evaluate_sweep_shows_temperature_and_scores_survive_a_failing_scorer(
    executed: Callable[[str], Executed],
) -> None:
    p = executed("evaluate.ipynb").probe
    assert p["rows"] == 32 and p["status"] == ["succeeded"]
    for model in ("replibatch/tiny-llama", "replibatch/official-chat"):
        assert p["tokens"][f"{model}|0.9"] > 1.2 * p["tokens"][f"{model}|0.2"]
    # The scorer raised exactly on the rows whose prompt has no number; the rest were scored.
    assert p["score_error_rows"] == sorted(set(range(32)) - set(p["numbered_rows"]))
    assert p["numbered_rows"]


def test_evaluate_judges_through_the_cache_and_sees_images(executed: Callable[[str], Executed]) -> None:
    run = executed("evaluate.ipynb")
    p = run.probe
    assert set(p["judge_scores"]) <= {1.0, 2.0, 3.0, 4.0, 5.0} and len(p["judge_scores"]) > 1
    assert p["judge_costs_positive"]
    assert p["judge_second_cached"] == 32
    assert "created by the second call: 0" in run.text("creates_before = server.stats.creates")
    for prompt in ("a red lighthouse on a blue sea", "a golden field at dusk"):
        assert p["vision"][f"{prompt}|30"] > p["vision"][f"{prompt}|3"]


def test_evaluate_rates_ranks_and_diffs(executed: Callable[[str], Executed]) -> None:
    run = executed("evaluate.ipynb")
    p = run.probe
    assert p["best_rows"] == p["hot_chat"] and p["stars"] == {"0": 2.0, "1": 2.0}
    assert len(p["board_index"]) == 4 and p["board_rows"] == [8, 8, 8, 8]
    # Every comparison hands out one point in all (a win, or two halves): 4 groups share 2.0.
    assert p["board_win_sum"] == pytest.approx(2.0)
    board_html = run.data('board = rb.leaderboard(', "text/html")[0]
    assert "win rate" in board_html and "replibatch/official-chat" in board_html
    # Exactly the answers that had hit the old max_tokens changed.
    assert p["changed_rows"] == p["truncated_rows"] and p["changed_rows"]
    assert p["only_different_rows"] == len(p["changed_rows"])


# --- fine_tune_sweep ------------------------------------------------------------------------------


def test_fine_tune_sweep_trains_four_versions_once(executed: Callable[[str], Executed]) -> None:
    p = executed("fine_tune_sweep.ipynb").probe
    assert p["trained_status"] == ["succeeded"] * 4
    assert len(set(p["trained_versions"])) == 4
    assert all(v.startswith("replibatch-sim/sea-llama:") for v in p["trained_versions"])
    assert p["trained_cost_positive"]
    assert p["again_cached"] == [True] * 4 and p["again_versions"] == p["trained_versions"]
    assert p["training_creates"] == 4 and p["uploads"] == 1


def test_fine_tune_sweep_ranks_hyper_parameters_by_what_the_versions_write(
    executed: Callable[[str], Executed],
) -> None:
    run = executed("fine_tune_sweep.ipynb")
    p = run.probe
    assert p["res_rows"] == 16 and p["res_status"] == ["succeeded"]
    assert sorted(p["res_models"]) == sorted(p["trained_versions"])
    assert p["res_cost_positive"]
    means = p["mean_by_grid"]
    # Stronger training (more steps, higher rate) writes more of the corpus; the base none.
    assert means["300/0.001"] > means["100/0.001"] > means["100/0.0002"]
    assert means["300/0.0002"] > means["100/0.0002"] and p["base_score"] == 0
    assert p["board_order"][0] == [300, 0.001]
    assert run.data('rb.compare(scored', "text/html")
    assert run.data("rb.plot.heatmap(", "image/png")
