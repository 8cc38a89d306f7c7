"""The decision counters: typed fields, read like the dict they replace."""

from __future__ import annotations

from typing import get_args

import pytest

from litellm_circuit_breaker._counters import CounterName, DecisionCounters


def test_every_counter_name_is_a_field_and_reads_like_a_dict() -> None:
    """``counters["trials"]``, ``.get`` and ``dict(counters)`` as before; unknown names raise."""
    counters = DecisionCounters()
    assert tuple(counters) == get_args(CounterName)
    counters.bump("trials")
    counters.bump("skipped", 3)
    assert counters["trials"] == 1
    assert counters.skipped == 3
    assert counters.get("fail_open", 0) == 0
    assert dict(counters)["skipped"] == 3
    assert "trials=1" in repr(counters)
    with pytest.raises(KeyError):
        counters["no_such_counter"]
