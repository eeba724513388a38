"""Issue 16 point 3, end to end: a run given several tokens spreads its creates over them, sets
aside a token the service refuses (402 once its credit is spent, 401), moves that token's rows
to the others without ever creating a row twice, and reads each prediction with the token that
created it. Simulator on real sockets, each token its own account (``separate_accounts``), so a
read with the wrong token would be a 404 and fail its row."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import replibatch as rb
from replibatch._engine import create
from replibatch._http.edge import Edge
from replibatch._spend.ledger import LEDGER_FILE, token_fingerprint
from replibatch.errors import TransientError
from replibatch.sim import serve

A = "r8_token_a_secret_aaaaaaaaaaaaaaaaaaaaaaaaaaa"
B = "r8_token_b_secret_bbbbbbbbbbbbbbbbbbbbbbbbbbb"
CHAT = "replibatch/official-chat"  # priced per token: each row costs a few millionths of a USD
TEXT = "replibatch/tiny-llama"
GET = "GET /v1/predictions/{prediction_id}"


def go(df, sim, **options):
    options.setdefault("progress", False)
    options.setdefault("api_token", [A, B])
    return rb.run(df, base_url=sim.url, **options)


def prompts(n: int, tag: str = "row", **extra) -> pd.DataFrame:
    return pd.DataFrame({"prompt": [f"{tag} {i}" for i in range(n)], **extra})


def pending_count(cache_dir: Path) -> int:
    return rb.cache_info(rb.ResultCache(cache_dir)).pending


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("REPLIBATCH_CACHE_DIR", str(directory))
    for period in ("DAILY", "WEEKLY", "MONTHLY"):
        monkeypatch.delenv(f"REPLIBATCH_{period}_BUDGET", raising=False)
    return directory


def test_a_two_token_run_survives_one_token_running_out_of_credit(cache_dir, monkeypatch):
    monkeypatch.setattr(create, "MAX_WAIT", 0)  # no Prefer: wait: every row is polled
    with serve(time_scale=0.01, seed=0, credit={A: 0.0002}, separate_accounts=True) as sim:
        with pytest.warns(RuntimeWarning, match="set aside: Replicate answered 402"):
            res = go(prompts(30, max_tokens=40), sim, model=CHAT, concurrency=4)
        assert (res["status"] == "succeeded").all(), res["error"].dropna().unique()
        by_token = sim.stats.creates_by_token
        # Zero duplicates: 30 rows, 30 predictions, each input created once, on either token.
        assert sim.stats.creates == 30 and sim.stats.duplicate_creates == 0
        assert by_token[A] > 0 and by_token[B] > 0 and by_token[A] + by_token[B] == 30
        assert sim.stats.statuses.get(402, 0) >= 1  # A ran out, and was refused
        assert sim.credit.remaining(A) <= 0
        # Reads used the creating token: every poll of B's predictions was made with B (a read
        # with A would be a 404 and fail its row), and each token polled its own.
        requests = sim.stats.requests_by_token
        assert requests[A].get(GET, 0) > 0 and requests[B].get(GET, 0) > 0
        summary = res.attrs["replibatch"]
        fa, fb = token_fingerprint(A), token_fingerprint(B)
        assert summary["tokens"][fa]["creates"] == by_token[A]
        assert summary["tokens"][fb]["creates"] == by_token[B]
        assert "402" in summary["tokens"][fa]["set_aside"] and summary["tokens"][fb]["set_aside"] is None
        assert "stopped" not in summary
        # The ledger and the summary show spend per token fingerprint.
        spent = rb.spend(by="token")
        assert spent.loc[fa, "predictions"] == by_token[A]
        assert spent.loc[fb, "predictions"] == by_token[B]
        assert summary["spend_by_token"][fa] == pytest.approx(spent.loc[fa, "cost_usd"])
        assert summary["spend_by_token"][fb] == pytest.approx(spent.loc[fb, "cost_usd"])
        ledger = rb.spend()
        assert sorted(ledger["prediction_id"]) == sorted(res["prediction_id"])
    # Neither token is anywhere in the database files (WAL included), only the fingerprints.
    raw = b"".join(f.read_bytes() for f in cache_dir.glob(LEDGER_FILE + "*"))
    for token in (A, B):
        assert token.encode() not in raw and token[:14].encode() not in raw
        assert token_fingerprint(token).encode() in raw  # type: ignore[union-attr]


def test_when_every_token_is_set_aside_the_run_stops_cleanly(cache_dir):
    with serve(time_scale=0.01, seed=0, credit={A: 0.0, B: 0.0}, separate_accounts=True) as sim:
        with pytest.warns(RuntimeWarning, match="set aside"):
            res = go(prompts(12, max_tokens=8), sim, model=CHAT, concurrency=1)
        assert (res["status"] == "error").all()
        assert res["error"].str.contains("every token was set aside").all()
        assert res["error"].str.contains(token_fingerprint(A)).all()
        assert res["error"].str.contains(token_fingerprint(B)).all()
        # One 402 per token, and nothing sent after: no retry storm, nothing created.
        assert sim.stats.statuses.get(402) == 2 and sim.stats.creates == 0
        assert "every token was set aside" in res.attrs["replibatch"]["stopped"]
        assert len(rb.spend()) == 0


def test_a_token_answering_401_is_set_aside_and_its_rows_move(cache_dir):
    # Only B is a valid token here. Model lookups use the first token, so A comes second.
    with serve(time_scale=0.01, seed=0, api_tokens=[B], separate_accounts=True) as sim:
        with pytest.warns(RuntimeWarning, match="401"):
            res = go(prompts(10, max_tokens=8), sim, model=TEXT, api_token=[B, A], concurrency=4)
        assert (res["status"] == "succeeded").all(), res["error"].dropna().unique()
        assert sim.stats.creates_by_token == {B: 10}
        assert "not accepted" in res.attrs["replibatch"]["tokens"][token_fingerprint(A)]["set_aside"]


def test_profile_names_are_read_from_the_environment(cache_dir, monkeypatch):
    monkeypatch.setenv("REPLICATE_API_TOKEN_PERSONAL", A)
    monkeypatch.setenv("REPLICATE_API_TOKEN_TEAM", B)
    with serve(time_scale=0.01, seed=0, separate_accounts=True) as sim:
        res = go(prompts(16, max_tokens=8), sim, model=TEXT, api_token=["personal", "team"])
        assert (res["status"] == "succeeded").all()
        assert set(sim.stats.creates_by_token) == {A, B}  # spread over both
        tokens = res.attrs["replibatch"]["tokens"]
        assert tokens[token_fingerprint(A)]["profile"] == "personal"
        assert tokens[token_fingerprint(B)]["profile"] == "team"


def test_an_unset_profile_is_refused_before_anything_is_sent(sim, cache_dir, monkeypatch):
    monkeypatch.setenv("REPLICATE_API_TOKEN_PERSONAL", A)
    monkeypatch.delenv("REPLICATE_API_TOKEN_TEAM", raising=False)
    with pytest.raises(rb.ConfigurationError, match="profile 'team' is not set") as info:
        go(prompts(2), sim, model=TEXT, api_token=["personal", "team"])
    assert "REPLICATE_API_TOKEN_TEAM" in str(info.value) and A not in str(info.value)
    assert sim.stats.creates == 0 and not sim.stats.requests


def test_a_marker_is_re_attached_only_with_the_tokens_that_may_have_made_it(cache_dir, monkeypatch):
    async def cannot_list(self, **_filters):
        raise TransientError("list unavailable", status=503)

    with serve(time_scale=0.01, seed=1, drop_after_create_rate=1.0, fault_scope="create",
               separate_accounts=True) as sim:
        # Every create's reply is lost and the account cannot be listed: the outcome is unknown,
        # each row ends error and keeps its marker, which names both tokens.
        with monkeypatch.context() as patch:
            patch.setattr(Edge, "list_predictions", cannot_list)
            first = go(prompts(6, max_tokens=4), sim, model=TEXT)
        assert first["error"].str.contains("create outcome unknown").all()
        made = sim.stats.creates_by_token
        assert sum(made.values()) == 6 and pending_count(cache_dir) == 6
        sim.configure(drop_after_create_rate=0.0)
        # Without A, a row whose create may have gone out with A cannot be settled: it ends
        # error naming A's fingerprint, sends nothing, and keeps its marker.
        alone = go(prompts(6, max_tokens=4), sim, model=TEXT, api_token=B)
        assert (alone["status"] == "error").all()
        assert alone["error"].str.contains(f"with token {token_fingerprint(A)}").all()
        assert sim.stats.creates == 6 and pending_count(cache_dir) == 6
        # With both, each account is swept and every prediction adopted: nothing created again.
        again = go(prompts(6, max_tokens=4), sim, model=TEXT)
        assert (again["status"] == "succeeded").all(), again["error"].dropna().unique()
        assert sim.stats.creates == 6 and sim.stats.duplicate_creates == 0
        assert pending_count(cache_dir) == 0
