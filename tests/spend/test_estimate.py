"""estimate: pilot choice (pure) and argument checks; the projection accuracy test is in test_runner."""

import pandas as pd
import pytest

import replibatch as rb
from replibatch._spend.estimate import _spread


def test_pilot_rows_are_spread_over_the_frame():
    assert _spread(list(range(10)), 3) == [0, 4, 9] or _spread(list(range(10)), 3) == [0, 5, 9]
    assert _spread([7, 8], 3) == [7, 8]
    assert _spread(list(range(5)), 1) == [0]
    chosen = _spread(list(range(100)), 4)
    assert chosen[0] == 0 and chosen[-1] == 99 and len(set(chosen)) == 4


def test_bad_pilot_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match="pilot"):
        rb.estimate(pd.DataFrame({"prompt": ["x"]}), model="o/m", pilot=0)
