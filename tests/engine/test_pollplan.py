"""The polling policy: probe pages while nothing finished, then looks at the learned duration."""

from __future__ import annotations

import pytest

from replibatch._engine.pollplan import FEW, PAGE, look_time, next_look, probe


def test_few_watched_are_looked_at_often_and_many_when_the_age_has_doubled():
    assert next_look(10.0, 9.5, FEW, None) == 10.5  # 0.5 s minimum
    assert next_look(30.0, 10.0, FEW, None) == 32.0  # a tenth of 20 s
    assert next_look(30.0, 10.0, FEW + 1, None) == 40.0  # many: capped at 10 s
    assert next_look(14.0, 10.0, 500, None) == 18.0  # many: the age doubles


def test_a_known_duration_sets_the_look_and_overdue_ones_are_looked_at_often():
    # 65 s seen for the model: look at send + 65 s + 2 % slack (1.3 s), not before.
    assert next_look(20.0, 10.0, 500, 65.0) == 10.0 + 65.0 + 1.3
    assert next_look(20.0, 10.0, 500, 1.0) == 20.0 + 0.5  # overdue: 5 % of 10 s, at least 0.5 s
    assert next_look(210.0, 10.0, 500, 1.0) == 215.0  # ... at most 5 s


def test_a_probe_reads_the_oldest_page_of_an_unknown_model_and_every_known_one():
    watched = [(f"u{i}", "slow", float(i)) for i in range(250)] + [("k", "fast", 3.0)]
    # Due: a young one of the slow model, one in its oldest page, and the known model's one.
    read, deferred = probe([("u240", "slow", 240.0, False), ("u7", "slow", 7.0, False),
                            ("k", "fast", 3.0, True)], watched)
    assert sorted(read) == sorted(["k"] + [f"u{i}" for i in range(PAGE)])  # the whole oldest page
    assert deferred == ["u240"]
    # Only young ones due: nothing of the slow model is read, they wait for the probe.
    assert probe([("u240", "slow", 240.0, False)], watched) == ([], ["u240"])
    assert probe([("x", "slow", None, False)], watched) == (["x"], [])  # no creation time


@pytest.mark.parametrize("held", [60.0, 0.0])
def test_a_thousand_long_predictions_cost_about_twenty_pages(held):
    """Fake-clock model of the poller's looks: 1,000 predictions created over 10 s, each taking
    65 s, reaching the poller after `held` s (Prefer: wait) and 0.5 s later due; a look reads
    ceil(n / 100) pages; finished ones teach the duration."""
    n, duration = 1000, 65.0
    sent = [i / 100 for i in range(n)]
    due = {i: s + held + 0.5 for i, s in enumerate(sent)}
    expected: float | None = None
    pages = 0
    noticed_late: list[float] = []
    clock = 0.0
    while due:
        order = sorted(due, key=due.get)
        clock = max(clock, look_time([due[i] for i in order[:PAGE]], sent[order[0]], len(due)))
        looking = [i for i, t in due.items() if t <= clock + 0.25]
        keep, later = probe([(i, "m", sent[i], expected is not None) for i in looking],
                            [(i, "m", sent[i]) for i in due])
        read = list(keep)
        pages += -(-len(read) // PAGE)
        for i in read:
            if clock >= sent[i] + duration:
                noticed_late.append(clock - sent[i] - duration)
                expected = duration
                del due[i]
            else:
                due[i] = next_look(clock, sent[i], len(due), expected)
        follow = min((due[i] for i in read if i in due), default=None)
        for i in later:
            due[i] = next_look(clock, sent[i], len(due), expected) if follow is None else follow
    # Issue 11: at most one request per 50 rows polled (held 60 s, as Replicate's creates are);
    # polled from the start, the probes of the first minute add a few.
    assert pages <= (n / 50 if held else n / 35), pages
    assert max(noticed_late[PAGE:]) <= 12.0  # the first probe page may be a probe interval late
    assert clock <= sent[-1] + duration + 12.0  # ... and so the last row: wall/ideal <= 1.16
