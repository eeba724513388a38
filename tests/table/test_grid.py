import pandas as pd
import pytest

from replibatch._table.grid import grid
from replibatch.errors import ConfigurationError


def test_axes_only_is_the_product_in_keyword_order():
    g = grid(model=["a", "b"], temperature=[0.2, 0.5, 0.8], seed=range(2))
    assert list(g.columns) == ["model", "temperature", "seed"]
    assert len(g) == 2 * 3 * 2
    # The last axis varies fastest.
    assert g.iloc[:4].to_dict("records") == [
        {"model": "a", "temperature": 0.2, "seed": 0},
        {"model": "a", "temperature": 0.2, "seed": 1},
        {"model": "a", "temperature": 0.5, "seed": 0},
        {"model": "a", "temperature": 0.5, "seed": 1},
    ]
    assert g["model"].tolist() == ["a"] * 6 + ["b"] * 6
    assert not g.duplicated().any()
    assert g["seed"].dtype == "int64"
    assert isinstance(g.index, pd.RangeIndex) and g.index.tolist() == list(range(12))


def test_frame_rows_are_outermost_and_keep_their_columns_and_dtypes():
    df = pd.DataFrame({"prompt": ["p1", "p2"], "width": [512, 768]}, index=[10, 42])
    g = grid(df, model=["m1", "m2"])
    assert list(g.columns) == ["prompt", "width", "model"]
    assert g["prompt"].tolist() == ["p1", "p1", "p2", "p2"]
    assert g["model"].tolist() == ["m1", "m2", "m1", "m2"]
    assert g["width"].dtype == df["width"].dtype
    assert g.index.tolist() == [0, 1, 2, 3]
    assert df.index.tolist() == [10, 42] and list(df.columns) == ["prompt", "width"]


def test_strings_and_scalars_are_single_values():
    g = grid(model="owner/name", temperature=0.7)
    assert g.to_dict("records") == [{"model": "owner/name", "temperature": 0.7}]


def test_list_values_inside_an_axis_stay_whole_cells():
    g = grid(images=[["a.png", "b.png"], ["c.png"]], model="m")
    assert g["images"].tolist() == [["a.png", "b.png"], ["c.png"]]


def test_set_axis_is_sorted_so_the_order_is_reproducible():
    assert grid(seed={3, 1, 2})["seed"].tolist() == [1, 2, 3]


def test_repeat_adds_sample_index_innermost():
    df = pd.DataFrame({"prompt": ["x", "y"]})
    g = grid(df, temperature=[0.1, 0.9], repeat=3)
    assert len(g) == 2 * 2 * 3
    assert g["sample"].tolist() == [0, 1, 2] * 4
    assert g["sample"].dtype == "int64"
    assert not g.duplicated().any()
    assert g.iloc[:3]["temperature"].tolist() == [0.1, 0.1, 0.1]


def test_no_sample_column_without_repeat():
    assert "sample" not in grid(seed=range(2)).columns
    assert "sample" not in grid(seed=range(2), repeat=1).columns


def test_no_arguments_is_one_empty_row_and_frame_alone_is_copied():
    assert grid().shape == (1, 0)
    df = pd.DataFrame({"prompt": ["a", "b"]}, index=[5, 6])
    g = grid(df)
    assert g["prompt"].tolist() == ["a", "b"] and g.index.tolist() == [0, 1]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: grid(model=[]), "'model' is empty"),
        (lambda: grid(seed=range(0)), "'seed' is empty"),
        (lambda: grid(pd.DataFrame({"model": ["m"]}), model=["x"]), "'model' is already a column"),
        (lambda: grid(seed=[1], repeat=0), "repeat"),
        (lambda: grid(seed=[1], repeat=2.0), "repeat"),
        (lambda: grid(seed=[1], repeat=True), "repeat"),
        (lambda: grid(pd.DataFrame({"sample": [0]}), repeat=2), "'sample'"),
        (lambda: grid(sample=[0, 1], repeat=2), "'sample'"),
    ],
)
def test_invalid_calls_raise_configuration_error(call, message):
    with pytest.raises(ConfigurationError, match=message) as info:
        call()
    assert isinstance(info.value, ValueError)
