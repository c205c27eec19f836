"""strategies/: one parser of options for every way in, and the Spec a request becomes."""
from __future__ import annotations

import math

import pytest

from poolscore.server.errors import BadInput, OverLimit, UnknownStrategy
from poolscore.server.strategies import InputKind, ScoreOptions, check_k, options_from, parse_spec


def test_zero_and_absent_mean_the_defaults() -> None:
    assert options_from({}) == ScoreOptions()
    assert options_from({"temperature": 0, "base": 0.0, "seed": None}) == ScoreOptions()
    o = options_from({"input_kind": "probabilities", "temperature": 2, "base": 2.0, "normalized": True, "seed": -3})
    assert (o.input_kind, o.temperature, o.base, o.normalized, o.seed) == (InputKind.PROBABILITIES, 2, 2.0, True, -3)
    assert options_from({"input_kind": InputKind.LOG_PROBABILITIES}).input_kind is InputKind.LOG_PROBABILITIES


def test_names_that_are_not_options_are_passed_over() -> None:
    assert options_from({"priority": 3, "sequence_id": "x"}) == ScoreOptions()


@pytest.mark.parametrize("values, message", [
    ({"temperature": "hot"}, r"parameters.temperature: must be int or float, got str 'hot'"),
    ({"normalized": 1}, r"parameters.normalized: must be bool, got int 1"),
    ({"seed": 2.5}, r"parameters.seed: must be int, got float 2.5"),
    ({"seed": True}, r"parameters.seed: must be int, got bool True"),
    ({"temperature": -1.0}, r"parameters.temperature: must be a finite number > 0, got -1.0"),
    ({"base": 1.0}, r"parameters.base: must be a finite number > 1, got 1.0"),
    ({"input_kind": "probs"}, r"parameters.input_kind: 'probs' is not one of logits, probabilities, log_probabilities"),
    ({"seed": 2**63}, r"parameters.seed: must fit in int64"),
])
def test_bad_values_are_named_as_the_caller_spells_them(values: dict, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        options_from(values, "parameters")


def test_a_spec_is_a_registered_strategy_with_its_options() -> None:
    spec = parse_spec("entropy", {"base": 2.0})
    assert spec.strategy.name == "entropy" and spec.options.base == 2.0
    assert spec == parse_spec("entropy", {"base": 2}) and spec != parse_spec("entropy", {})
    assert spec.describe() == "strategy entropy (logits, temperature 1, base 2, normalized False, seed 0)"
    with pytest.raises(BadInput, match=r"strategy.name: missing; one of badge, bald, batch_bald, class_balanced"):
        parse_spec("", {})
    with pytest.raises(UnknownStrategy, match=r"unknown 'entropi'"):
        parse_spec("entropi", {})
    with pytest.raises(BadInput, match=r"strategy.temperature"):
        parse_spec("margin", {"temperature": math.inf})


def test_k_must_be_positive_and_within_the_limit() -> None:
    assert check_k(10, 10) == 10
    with pytest.raises(BadInput, match="k: must be > 0, got 0"):
        check_k(0, 10)
    with pytest.raises(OverLimit, match="k: 11 is over this server's limit of 10"):
        check_k(11, 10)
