import json
import math
import re

import pytest

from replibatch._spend.cost import PriceTable, cost_of, expected_cost
from replibatch.errors import ConfigurationError

VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.default()


def ran(predict_time, status="succeeded", **extra):
    return {"status": status, "started_at": "2024-01-01T00:00:00Z",
            "metrics": {"predict_time": predict_time}, **extra}


# -- packaged data -----------------------------------------------------------------------------


def test_packaged_prices_name_source_and_date_for_every_entry():
    from importlib import resources

    data = json.loads(resources.files("replibatch").joinpath("data/prices.json").read_text())
    assert data["schema"] == 1
    for section in ("hardware", "models"):
        for name, entry in data[section].items():
            assert entry.get("source"), f"{section} {name} has no source"
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry.get("date", "")), name


def test_packaged_hardware_matches_pricing_facts(table):
    # Transcribed from pricing-facts.md: base SKU price and 2x/4x/8x variants.
    facts = {
        "cpu": 0.0001,
        "gpu-t4": 0.000225,
        "gpu-a40-small": 0.000575,
        "gpu-a40-large": 0.000725,
        "gpu-l40s": 0.000975,
        "gpu-a100-large": 0.0014,
        "gpu-h100": 0.001525,
    }
    multi = {"gpu-a40-large": (0.00145, 0.0029, 0.0058), "gpu-l40s": (0.00195, 0.0039, 0.0078),
             "gpu-a100-large": (0.0028, 0.0056, 0.0112), "gpu-h100": (0.00305, 0.0061, 0.0122)}
    for sku, price in facts.items():
        assert table.usd_per_second(sku) == price
    for sku, prices in multi.items():
        for n, price in zip((2, 4, 8), prices, strict=False):
            assert table.usd_per_second(f"{sku}-{n}x") == price
    assert len(table.hardware_skus) == len(facts) + 3 * len(multi)


def test_sim_demo_models_are_priced(table):
    for ref in ("replibatch/tiny-llama", "replibatch/pixel-diffusion", "replibatch/official-chat",
                "deployments/replibatch/tiny-llama-prod"):
        assert ref in table
    assert table.lookup("replibatch/tiny-llama").hardware == "gpu-t4"
    assert table.lookup("replibatch/pixel-diffusion").hardware == "gpu-l40s"
    assert table.lookup("deployments/replibatch/tiny-llama-prod").dedicated


# -- per second --------------------------------------------------------------------------------


def test_per_second_public_model_is_exact_and_says_only_predict_time_is_billed(table):
    cost, basis = cost_of(table, "replibatch/pixel-diffusion", ran(3.21))
    assert cost == 0.00312975  # 3.21 × 0.000975
    assert basis.startswith("predict_time 3.21 s × gpu-l40s $0.000975/s")
    assert "only predict time" in basis


def test_per_second_multi_gpu_sku_through_hardware_override(table):
    priced = table.with_overrides(hardware={"acme/big-model": "gpu-h100-2x"})
    cost, basis = cost_of(priced, "acme/big-model", ran(10.5))
    assert cost == 0.032025  # 10.5 × 0.00305
    assert "gpu-h100-2x $0.00305/s" in basis


def test_deployment_cost_is_a_lower_bound(table):
    cost, basis = cost_of(table, "deployments/replibatch/tiny-llama-prod", ran(2))
    assert cost == 0.00045
    assert "lower bound" in basis and "setup and idle" in basis


def test_private_model_marked_dedicated_is_a_lower_bound(table):
    private = {"me/private": {"hardware": "gpu-t4", "dedicated": True}}
    priced = table.with_overrides(prices={"models": private})
    _, basis = cost_of(priced, "me/private", ran(1))
    assert "lower bound" in basis and "private model" in basis


def test_basis_rounds_half_even_but_cost_stays_exact(table):
    cost, basis = cost_of(table, "replibatch/tiny-llama", ran(2.0005))
    assert "predict_time 2 s" in basis  # 2.0005 -> 2.000 (half to even)
    assert cost == 0.0004501125  # 2.0005 × 0.000225, not 2 × 0.000225
    _, basis = cost_of(table, "replibatch/tiny-llama", ran(2.0015))
    assert "predict_time 2.002 s" in basis
    _, basis = cost_of(table, "replibatch/tiny-llama", ran(3e-06))
    assert "predict_time 0.000003 s" in basis


def test_failed_prediction_bills_its_predict_time(table):
    assert cost_of(table, "replibatch/tiny-llama", ran(4, status="failed"))[0] == 0.0009


def test_canceled_prediction_bills_if_it_ran_and_costs_nothing_if_it_never_started(table):
    assert cost_of(table, "replibatch/tiny-llama", ran(4, status="canceled"))[0] == 0.0009
    canceled = {"status": "canceled", "started_at": None, "metrics": {}}
    cost, basis = cost_of(table, "replibatch/tiny-llama", canceled)
    assert cost == 0.0 and "before it started" in basis


def test_no_predict_time_is_nan_with_the_reason(table):
    failed = {"status": "failed", "started_at": "x", "metrics": {}}
    cost, basis = cost_of(table, "replibatch/tiny-llama", failed)
    assert math.isnan(cost)
    assert "predict_time" in basis


def test_version_pinned_and_bare_version_references(table):
    pinned = cost_of(table, f"replibatch/tiny-llama:{VERSION}", ran(4))
    bare = cost_of(table, VERSION, ran(4, model="replibatch/tiny-llama"))
    assert pinned[0] == bare[0] == 0.0009
    cost, basis = cost_of(table, VERSION, ran(4))
    assert math.isnan(cost) and "names no model" in basis


# -- per token and per output --------------------------------------------------------------------


def test_per_token_matches_the_billing_page_example(table):
    model = "meta/meta-llama-3.1-405b-instruct"
    only_input = cost_of(table, model, {"metrics": {"input_token_count": 8, "output_token_count": 0}})
    only_output = cost_of(table, model, {"metrics": {"input_token_count": 0, "output_token_count": 43}})
    both, basis = cost_of(table, model, {"metrics": {"input_token_count": 8, "output_token_count": 43}})
    assert only_input[0] == 0.0000760
    assert only_output[0] == 0.0004085
    assert both == 0.0004845
    assert basis == "43 output tokens × $9.5/M + 8 input tokens × $9.5/M"


def test_per_token_without_counts_is_nan(table):
    cost, basis = cost_of(table, "replibatch/official-chat", {"metrics": {"input_token_count": 5}})
    assert math.isnan(cost) and "output_token_count" in basis


def test_per_image_counts_outputs(table):
    model = "black-forest-labs/flux-schnell"
    cost, basis = cost_of(table, model, {"status": "succeeded", "output": ["a.webp", "b.webp"]})
    assert (cost, basis) == (0.006, "2 images × $0.003")
    assert cost_of(table, model, {"status": "succeeded", "output": "a.webp"}) == (0.003, "1 image × $0.003")
    assert cost_of(table, model, {"status": "failed", "output": None})[0] == 0.0
    removed = cost_of(table, model, {"status": "succeeded", "output": None, "data_removed": True})
    assert math.isnan(removed[0])


# -- unknown and overrides ---------------------------------------------------------------------


def test_unknown_model_is_nan_and_says_what_to_pass(table):
    cost, basis = cost_of(table, "someone/some-model", ran(3))
    assert math.isnan(cost)
    assert "someone/some-model" in basis and "hardware={'someone/some-model': 'gpu-" in basis
    assert "prices=" in basis


def test_unparseable_reference_is_nan_not_an_exception(table):
    assert math.isnan(cost_of(table, "not a model", ran(1))[0])


def test_overrides_from_dict_add_hardware_and_models_without_touching_the_original(table):
    priced = table.with_overrides(
        prices={
            "hardware": {"gpu-new": {"usd_per_second": 0.5}},
            "models": {"me/fast": {"hardware": "gpu-new"},
                       "me/img": {"usd_per_output": 0.25, "unit": "frame"}},
        }
    )
    assert cost_of(priced, "me/fast", ran(3))[0] == 1.5
    assert cost_of(priced, "me/img", {"output": [1, 2, 3]}) == (0.75, "3 frames × $0.25")
    assert "me/fast" not in table and "gpu-new" not in table.hardware_skus


def test_overrides_from_a_json_file(tmp_path, table):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": {"replibatch/tiny-llama": {"hardware": "gpu-a100-large"}}}))
    priced = table.with_overrides(prices=path)
    assert cost_of(priced, "replibatch/tiny-llama", ran(2))[0] == 0.0028
    assert cost_of(table.with_overrides(prices=str(path)), "replibatch/tiny-llama", ran(2))[0] == 0.0028


def test_hardware_override_replaces_a_per_unit_entry(table):
    priced = table.with_overrides(hardware={"black-forest-labs/flux-schnell": "gpu-h100"})
    assert cost_of(priced, "black-forest-labs/flux-schnell", ran(2))[0] == 0.00305


def test_unknown_sku_lists_known_skus(table):
    with pytest.raises(ConfigurationError) as info:
        table.with_overrides(hardware={"me/model": "gpu-b200"})
    assert "gpu-b200" in str(info.value) and "gpu-l40s-2x" in str(info.value) and "gpu-t4" in str(info.value)


@pytest.mark.parametrize(
    "prices",
    [
        {"models": {"me/x": {"hardware": "gpu-t4", "usd_per_output": 1}}},  # two kinds
        {"models": {"me/x": {}}},  # no kind
        {"models": {"me/x": {"usd_per_output": -1}}},
        {"models": {"me/x": {"usd_per_output": "cheap"}}},
        {"models": {"me/x:" + VERSION: {"hardware": "gpu-t4"}}},
        {"models": {"me/x": {"hardware": "gpu-nope"}}},
        {"hardware": {"gpu-x": {"usd_per_second": float("nan")}}},
        {"hardware": {"gpu-x": {}}},
        {"schema": 2},
        {"modles": {}},
        ["not", "a", "dict"],
    ],
)
def test_invalid_price_data_raises(table, prices):
    with pytest.raises(ConfigurationError):
        table.with_overrides(prices=prices)


def test_unreadable_or_invalid_price_file_raises(tmp_path, table):
    with pytest.raises(ConfigurationError, match="cannot read"):
        table.with_overrides(prices=tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        table.with_overrides(prices=bad)


def test_bad_hardware_key_raises(table):
    with pytest.raises(ConfigurationError):
        table.with_overrides(hardware={VERSION: "gpu-t4"})
    with pytest.raises(ConfigurationError):
        table.with_overrides(hardware=["gpu-t4"])


# -- expected cost ------------------------------------------------------------------------------


def test_expected_cost_per_output_uses_num_outputs(table):
    assert expected_cost(table, "black-forest-labs/flux-schnell", {"num_outputs": 4}) == 0.012
    assert expected_cost(table, "black-forest-labs/flux-schnell", {"prompt": "x"}) == 0.003


def test_expected_cost_per_second_needs_a_typical_predict_time(table):
    assert expected_cost(table, "replibatch/tiny-llama", {}) is None
    priced = table.with_overrides(
        prices={"models": {"replibatch/tiny-llama": {"hardware": "gpu-t4", "typical_predict_s": 4}}}
    )
    assert expected_cost(priced, "replibatch/tiny-llama", {}) == 0.0009


def test_expected_cost_per_token_is_an_upper_bound_from_max_tokens_and_prompt_bytes(table):
    model = "meta/meta-llama-3.1-405b-instruct"
    # 100 output tokens + "héllo" = 6 UTF-8 bytes as input tokens, both at $9.50/M.
    assert expected_cost(table, model, {"prompt": "héllo", "max_tokens": 100}) == 0.001007
    assert expected_cost(table, model, {"prompt": "hi", "max_new_tokens": 10}) == 0.000114
    assert expected_cost(table, model, {"prompt": "hi"}) is None


def test_expected_cost_of_unknown_model_is_none(table):
    assert expected_cost(table, "someone/else", {"num_outputs": 2}) is None
    assert expected_cost(table, VERSION, {}) is None
