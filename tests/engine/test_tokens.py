"""Issue 16 point 3: which tokens a run uses (`tokens`) and how creates spread over them and
leave a refused one (`tokenpool`). Pure: no network, an injected clock for the limiters."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from replibatch._engine.limiter import AdaptiveRateLimiter
from replibatch._engine.tokenpool import MARKER_TOKEN, MARKER_TOKENS, TokenPool
from replibatch._engine.tokens import TokenSpec, is_profile_name, profile_variable, resolve_tokens
from replibatch._spend.ledger import token_fingerprint
from replibatch._spend.spendgate import PaymentRequiredError
from replibatch.errors import AuthenticationError, ConfigurationError, ReplicateAPIError

PERSONAL = "r8_personal_secret_0000000000000000000000"
TEAM = "r8_team_secret_111111111111111111111111111"


def test_one_token_or_none_behaves_as_before():
    assert resolve_tokens(None, None, {}) == []
    assert [s.token for s in resolve_tokens(None, None, {"REPLICATE_API_TOKEN": PERSONAL})] == [PERSONAL]
    assert [s.token for s in resolve_tokens(None, TEAM, {"REPLICATE_API_TOKEN": PERSONAL})] == [TEAM]
    (spec,) = resolve_tokens(PERSONAL, TEAM, {})
    assert spec.token == PERSONAL and spec.profile is None
    assert spec.fingerprint == token_fingerprint(PERSONAL)


def test_profile_names_read_their_variable():
    env = {"REPLICATE_API_TOKEN_PERSONAL": PERSONAL, "REPLICATE_API_TOKEN_TEAM_B": TEAM}
    specs = resolve_tokens(["personal", "team-b"], None, env)
    assert [(s.token, s.profile) for s in specs] == [(PERSONAL, "personal"), (TEAM, "team-b")]
    assert specs[1].label == f"profile 'team-b' ({token_fingerprint(TEAM)})"
    assert profile_variable("team-b") == "REPLICATE_API_TOKEN_TEAM_B"


def test_tokens_and_profiles_mix_and_keep_their_order():
    specs = resolve_tokens([TEAM, "personal"], None, {"REPLICATE_API_TOKEN_PERSONAL": PERSONAL})
    assert [s.token for s in specs] == [TEAM, PERSONAL]
    assert specs[0].label == f"token {token_fingerprint(TEAM)}"


def test_what_counts_as_a_profile_name():
    assert is_profile_name("team") and is_profile_name("dev_2") and is_profile_name("a-b")
    assert not is_profile_name("r8_short")  # Replicate's tokens all start with r8_
    assert not is_profile_name("x" * 33)
    assert not is_profile_name("has space") and not is_profile_name("a.b")


def test_an_unset_profile_is_a_clear_error_naming_the_profile_and_variable():
    with pytest.raises(ConfigurationError, match=r"profile 'team' is not set.*REPLICATE_API_TOKEN_TEAM"):
        resolve_tokens(["personal", "team"], None, {"REPLICATE_API_TOKEN_PERSONAL": PERSONAL})
    with pytest.raises(ConfigurationError, match="REPLICATE_API_TOKEN_TEAM"):
        resolve_tokens(["team"], None, {"REPLICATE_API_TOKEN_TEAM": ""})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([], "empty list"),
        ([PERSONAL, 3], "entry 2 must be a token or a profile name, got int"),
        ([""], "got an empty string"),
        (42, "got int"),
        (b"r8_bytes", "got bytes"),
    ],
)
def test_malformed_token_lists_are_refused(value, message):
    with pytest.raises(ConfigurationError, match=message):
        resolve_tokens(value, None, {})


def test_the_same_token_twice_is_refused_without_showing_it():
    env = {"REPLICATE_API_TOKEN_A": PERSONAL}
    with pytest.raises(ConfigurationError, match="same token twice") as info:
        resolve_tokens(["a", PERSONAL], None, env)
    text = str(info.value)
    assert PERSONAL not in text and token_fingerprint(PERSONAL) in text and "'a'" in text


def test_a_spec_never_shows_its_token():
    spec = TokenSpec.of(PERSONAL, "personal")
    assert PERSONAL not in repr(spec) and PERSONAL not in spec.label


# -- the pool -------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Lane:
    spec: TokenSpec
    creates: AdaptiveRateLimiter


def lanes(clock: Clock, *rates: float) -> list[Lane]:
    return [
        Lane(TokenSpec.of(f"r8_lane_{i}_" + "0" * 30), AdaptiveRateLimiter(rate, clock=clock))
        for i, rate in enumerate(rates)
    ]


def test_creates_alternate_over_equal_tokens():
    pool = TokenPool(lanes(Clock(), 60.0, 60.0))
    chosen = []
    for _ in range(6):
        lane = pool.choose()
        assert lane is not None
        pool.taken(lane)
        chosen.append(pool.lanes.index(lane))
    assert chosen == [0, 1, 0, 1, 0, 1]


def test_a_faster_token_takes_more_of_the_queue():
    pool = TokenPool(lanes(Clock(), 60.0, 180.0))
    counts = [0, 0]
    for _ in range(40):
        lane = pool.choose()
        assert lane is not None
        pool.taken(lane)
        counts[pool.lanes.index(lane)] += 1
    assert counts == [10, 30]


def test_a_paused_token_is_passed_over_until_its_pause_ends():
    clock = Clock()
    pool = TokenPool(lanes(clock, 600.0, 600.0))
    first, second = pool.lanes
    first.creates.on_throttled(5.0, sent_at=0.0)  # a 429 paused the first token 5 s
    for _ in range(10):  # 10 places on the second are due well before the pause ends
        lane = pool.choose()
        assert lane is second
        pool.taken(lane)
    clock.now = 10.0
    for _ in range(10):
        pool.sent(second)
    assert first.creates.rate_per_minute < second.creates.rate_per_minute  # it learned
    pool.taken(second)
    pool.taken(second)
    assert pool.choose() is first  # its pause is over; the second's queue is longer


def test_sent_places_leave_the_queue_and_count_per_token():
    pool = TokenPool(lanes(Clock(), 60.0, 60.0))
    first = pool.lanes[0]
    pool.taken(first)
    pool.sent(first)
    assert pool.sent_by_token == {first.spec.fingerprint: 1, pool.lanes[1].spec.fingerprint: 0}
    assert pool.choose() is pool.lanes[1]  # equal queues: the one that sent fewer


def test_a_refused_token_is_set_aside_once_with_a_message_that_says_what_to_do():
    pool = TokenPool(lanes(Clock(), 60.0, 60.0))
    first, second = pool.lanes
    record = pool.set_aside(first, ReplicateAPIError("Billing required", status=402))
    assert record is not None
    assert pool.set_aside(first, ReplicateAPIError("again", status=402)) is None
    text = record.message()
    assert first.spec.fingerprint in text and "402" in text
    assert "replicate.com/account/billing" in text and "leave it out of api_token" in text
    assert first.spec.token not in text
    assert [pool.choose() for _ in range(3)] == [second, second, second]
    assert pool.active() == [second]


def test_when_every_token_is_set_aside_the_stop_error_names_each():
    pool = TokenPool(lanes(Clock(), 60.0, 60.0))
    first, second = pool.lanes
    pool.set_aside(first, AuthenticationError("not accepted", status=401))
    assert pool.choose() is second
    pool.set_aside(second, ReplicateAPIError("Billing required", status=402))
    assert pool.choose() is None
    error = pool.stop_error()
    assert isinstance(error, PaymentRequiredError) and error.status == 402
    assert first.spec.fingerprint in str(error) and second.spec.fingerprint in str(error)
    only_auth = TokenPool(lanes(Clock(), 60.0))
    only_auth.set_aside(only_auth.lanes[0], AuthenticationError("no", status=401))
    assert isinstance(only_auth.stop_error(), AuthenticationError)


def test_a_choice_stays_among_the_tokens_a_marker_allows():
    pool = TokenPool(lanes(Clock(), 60.0, 60.0, 60.0))
    first, second, third = pool.lanes
    meta = pool.marker_meta()
    assert meta == {MARKER_TOKENS: [lane.spec.fingerprint for lane in pool.lanes]}
    pool.set_aside(first, ReplicateAPIError("Billing required", status=402))
    allowed = {second.spec.fingerprint}
    assert pool.marker_meta() == {MARKER_TOKENS: [second.spec.fingerprint, third.spec.fingerprint]}
    for _ in range(3):
        lane = pool.choose(allowed)
        assert lane is second
        pool.taken(lane)
    pool.set_aside(second, ReplicateAPIError("Billing required", status=402))
    assert pool.choose(allowed) is None  # the third is active, but the marker does not name it


def test_a_marker_is_read_with_the_token_that_made_it():
    pool = TokenPool(lanes(Clock(), 60.0, 60.0))
    first, second = pool.lanes
    assert pool.marker_lanes({MARKER_TOKEN: second.spec.fingerprint}) == [second]
    both = [first.spec.fingerprint, second.spec.fingerprint]
    assert pool.marker_lanes({MARKER_TOKENS: both}) == [first, second]
    missing = pool.marker_lanes({MARKER_TOKEN: "tok-0123456789"})
    assert isinstance(missing, str) and "tok-0123456789" in missing and "api_token" in missing
    partly = pool.marker_lanes({MARKER_TOKENS: [first.spec.fingerprint, "tok-0123456789"]})
    assert isinstance(partly, str) and "tok-0123456789" in partly


def test_a_marker_without_a_token_is_read_by_a_single_token_run_only():
    single = TokenPool(lanes(Clock(), 60.0))
    assert single.marker_lanes({"model": "m"}) == [single.lanes[0]]
    several = TokenPool(lanes(Clock(), 60.0, 60.0))
    reason = several.marker_lanes({"model": "m"})
    assert isinstance(reason, str) and "one token alone" in reason


def test_an_empty_pool_is_a_programming_error():
    with pytest.raises(ValueError, match="at least one lane"):
        TokenPool([])
