"""Owning background tasks: the one way this package stops a task it started."""

from __future__ import annotations

import asyncio

__all__ = ["cancel_and_wait", "raise_if_cancelled"]


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` and wait until it has ended; safe for None and finished tasks.

    A task of another event loop is cancelled there without waiting (its loop
    owns it). A cancellation of the caller itself still propagates.
    """
    if task is None or task.done():
        return
    if task.get_loop() is not asyncio.get_running_loop():
        task.get_loop().call_soon_threadsafe(task.cancel)
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


def raise_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop and the request was lost.

    A library awaited inside a loop can swallow a cancellation that lands at the
    wrong moment (redis-py does while it connects or reads: the task stays
    "cancelling" but nothing raises). A loop that went on would keep its owner,
    and ``asyncio.run`` (one per call, in scripts), waiting for good: every loop
    this package runs checks after each step that awaits another library."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
