"""Rule params that equivalent configs give equally.

Snakemake reruns a job when the ``repr`` of one of its params changes, and a dict's
``repr`` follows its key order, as ``1`` and ``1.0`` differ. A config written back by a
YAML formatter (sorted keys) or with ``resolution: 1`` for ``1.0`` would rerun every job.
:func:`canonical` sorts keys at every level and gives each number the type the schema
declares for its key: ``number`` keys become floats, ``integer`` keys ints (JSON Schema
accepts ``1.0`` as an integer).
"""

from __future__ import annotations

from collections.abc import Mapping


def schema_number_keys(schema: Mapping) -> tuple[frozenset[str], frozenset[str]]:
    """(keys typed ``number``, keys typed ``integer``) anywhere in a JSON schema.

    Keys are matched by name; a name typed ``number`` in one place and ``integer`` in
    another would be ambiguous and raises ValueError (the schema test keeps it so).
    """
    numbers, integers = set(), set()

    def walk(node):
        if isinstance(node, Mapping):
            for key, spec in (node.get("properties") or {}).items():
                types = spec.get("type") if isinstance(spec, Mapping) else None
                types = [types] if isinstance(types, str) else list(types or [])
                if "number" in types:
                    numbers.add(key)
                if "integer" in types:
                    integers.add(key)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    if numbers & integers:
        raise ValueError(
            f"the schema types {sorted(numbers & integers)} as number in one place and "
            "integer in another; give each key name one numeric type"
        )
    return frozenset(numbers), frozenset(integers)


def canonical(value, numbers: frozenset[str] = frozenset(), integers: frozenset[str] = frozenset()):
    """``value`` with dict keys sorted at every level and numbers typed by their key."""

    def convert(item, key=None):
        if isinstance(item, Mapping):
            return {k: convert(item[k], k) for k in sorted(item, key=str)}
        if isinstance(item, list | tuple):
            return [convert(element, key) for element in item]
        if isinstance(item, bool):
            return item
        if key in numbers and isinstance(item, int):
            return float(item)
        if key in integers and isinstance(item, float) and item.is_integer():
            return int(item)
        return item

    return convert(value)
