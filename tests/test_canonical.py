"""scembed.canonical: rule params that equivalent configs give equally."""

from __future__ import annotations

import pytest

from scembed.canonical import canonical, schema_number_keys
from scembed.schema import load_schema

SCHEMA = load_schema()


def test_keys_are_sorted_at_every_level():
    a = {"b": 1, "a": {"y": [{"q": 1, "p": 2}], "x": 0}}
    b = {"a": {"x": 0, "y": [{"p": 2, "q": 1}]}, "b": 1}
    assert repr(a) != repr(b)
    assert repr(canonical(a)) == repr(canonical(b))
    assert list(canonical(a)) == ["a", "b"] and list(canonical(a)["a"]["y"][0]) == ["p", "q"]


def test_numbers_take_the_type_the_schema_gives_their_key():
    numbers, integers = schema_number_keys(SCHEMA)
    assert {"resolution", "target_sum", "lr", "dropout"} <= numbers
    assert {"n_top_genes", "n_neighbors", "max_epochs", "seed"} <= integers
    config = {"resolution": 1, "target_sum": 10000, "n_top_genes": 1000.0, "seed": 0}
    assert repr(canonical(config, numbers, integers)) == repr(
        {"n_top_genes": 1000, "resolution": 1.0, "seed": 0, "target_sum": 10000.0}
    )
    # values that are not whole, booleans and strings are left as they are
    kept = {"n_top_genes": 10.5, "resolution": True, "lr": "auto", "name": 1.0}
    assert canonical(kept, numbers, integers) == kept
    assert isinstance(canonical(kept, numbers, integers)["resolution"], bool)
    # a number in a list takes its key's type too
    assert canonical({"resolution": [1, 0.5]}, numbers, integers) == {"resolution": [1.0, 0.5]}


def test_a_key_typed_number_and_integer_in_two_places_is_refused():
    schema = {
        "properties": {
            "a": {"properties": {"k": {"type": "number"}}},
            "b": {"properties": {"k": {"type": ["integer", "null"]}}},
        }
    }
    with pytest.raises(ValueError, match=r"\['k'\].*one numeric type"):
        schema_number_keys(schema)
