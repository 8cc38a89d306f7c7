"""The attempt ledger, without LiteLLM: each attempt counts once, each trial has one holder."""

from __future__ import annotations

import threading

from litellm_circuit_breaker._ledger import AttemptLedger


def test_an_inline_report_always_counts_and_its_queued_copy_never() -> None:
    """Inline first, then the queued log event of the same attempt: one count."""
    ledger = AttemptLedger()
    assert ledger.counts("c1", "d", inline=True)
    assert not ledger.counts("c1", "d", inline=False)
    assert not ledger.counts("c1", "d", inline=False)


def test_retries_sharing_a_call_id_each_count_inline() -> None:
    """The proxy shares one call id across a request's retries: every inline report counts."""
    ledger = AttemptLedger()
    assert all(ledger.counts("c1", "d", inline=True) for _ in range(3))


def test_a_queued_report_without_an_inline_one_counts_once() -> None:
    """Streams and sync calls have only the queued event; its duplicates are dropped."""
    ledger = AttemptLedger()
    assert ledger.counts("c2", "d", inline=False)
    assert not ledger.counts("c2", "d", inline=False)
    assert ledger.counts("c2", "other", inline=False)  # another deployment: another attempt


def test_a_report_without_a_call_id_counts() -> None:
    """Nothing to match it against: counted, never silently dropped."""
    ledger = AttemptLedger()
    assert ledger.counts(None, "d", inline=False)
    assert ledger.counts(None, "d", inline=False)


def test_an_inline_success_is_known_by_call_id_alone() -> None:
    """The queued success copy can be dropped before parsing anything else."""
    ledger = AttemptLedger()
    ledger.counts("c3", "d", inline=True, success=True)
    assert ledger.succeeded_inline("c3")
    assert not ledger.succeeded_inline("c4")
    assert not ledger.succeeded_inline(None)
    assert ledger.reported_inline("c3", "d")
    assert not ledger.reported_inline("c3", "other")


def test_queued_reports_are_matched_against_reports_of_the_same_kind() -> None:
    """A retry sharing a failed attempt's call id (the proxy's) still has its success counted."""
    ledger = AttemptLedger()
    assert ledger.counts("c5", "d", inline=True)  # the first attempt failed, inline
    assert ledger.counts("c5", "d", inline=False, success=True)  # its retry's stream ended well
    assert not ledger.counts("c5", "d", inline=False, success=True)  # a copy of that
    assert not ledger.counts("c5", "d", inline=False)  # a copy of the inline failure
    assert ledger.counts("c6", "d", inline=True, success=True)
    assert not ledger.counts("c6", "d", inline=False, success=True)
    assert ledger.counts("c6", "d", inline=False)  # a stream that broke after answering


def test_memory_is_bounded_oldest_first() -> None:
    """Past its memory the oldest call ids are forgotten, the newest kept."""
    ledger = AttemptLedger(memory=4)
    for n in range(10):
        ledger.counts(f"c{n}", "d", inline=True, success=True)
    assert not ledger.succeeded_inline("c0")
    assert ledger.succeeded_inline("c9")


def test_a_trial_is_ended_by_its_holder_or_by_any_verdict() -> None:
    """A caller error of another request leaves the permit; a verdict ends it whoever holds it."""
    ledger = AttemptLedger()
    ledger.hold_trial("d", "trace-1")
    assert not ledger.end_trial("d", "trace-2", any_trace=False)
    assert ledger.end_trial("d", "trace-1", any_trace=False)
    assert not ledger.end_trial("d", any_trace=True)  # already ended
    ledger.hold_trial("d", None)  # the sync Router knows no trace
    assert ledger.end_trial("d", "anyone", any_trace=False)
    ledger.hold_trial("d", "trace-3")
    assert ledger.end_trial("d", any_trace=True)


def test_concurrent_reports_of_one_attempt_count_exactly_once() -> None:
    """Eight threads report the same queued attempt: exactly one of them counts."""
    ledger = AttemptLedger()
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def report() -> None:
        barrier.wait()
        results.append(ledger.counts("c5", "d", inline=False))

    threads = [threading.Thread(target=report) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
