"""The training bar moves with the running trainings' own percentages, not only finished rows."""

from __future__ import annotations

from replibatch._engine.training_bar import TrainingBar


class FakeBar:
    def __init__(self) -> None:
        self.n = 0.0
        self.postfix = ""
        self.closed = False

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix = text

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def test_the_bar_counts_finished_trainings_plus_running_fractions():
    fake = FakeBar()
    bar = TrainingBar(fake, total=4, cached=1)
    assert fake.n == 1 and "1 cached" in fake.postfix
    bar.advance(1, 0.4)
    bar.advance(2, 0.5)
    assert fake.n == 1.9 and "2 training" in fake.postfix
    bar.advance(1, 0.2)  # a report never moves a training backwards
    assert fake.n == 1.9
    bar.finish_row(1, {"status": "succeeded", "cost_usd": 0.5})
    bar.finish_row(2, {"status": "failed", "cost_usd": float("nan")})
    assert fake.n == 3 and "1 failed" in fake.postfix and "$0.5000" in fake.postfix
    bar.close()
    assert fake.closed
