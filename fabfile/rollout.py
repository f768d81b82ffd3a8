"""How many nodes a rollout changes at once: `--batch`, else the inventory's `max_unavailable`."""
from __future__ import annotations

from invoke import Exit

from .inventory import VARS, InventoryError

#: The inventory's check of `max_unavailable`: a whole number from 1, or a percentage like "25%".
_CHECK = VARS["max_unavailable"][1]


def parse_batch(text: str) -> int | str:
    """`--batch`'s value as the inventory would hold it: 3 for "3", "25%" for "25%"."""
    value = text.strip()
    try:
        return _CHECK(int(value) if value.isdecimal() else value, "--batch")
    except InventoryError:
        raise Exit(f"--batch takes a whole number of nodes from 1 (e.g. 3) or a percentage of the nodes "
                   f"from 1% to 100% (e.g. 25%), not {text!r}") from None


def batch_size(value: int | str, total: int) -> int:
    """How many of `total` nodes one batch holds: `value` itself, or its percentage of `total`
    rounded down; at least 1."""
    if isinstance(value, str):
        return max(1, total * int(value.rstrip("%")) // 100)
    return max(1, value)
