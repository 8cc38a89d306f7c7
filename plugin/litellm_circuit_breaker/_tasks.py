"""Owning background tasks: the one way this package stops a task it started."""

from __future__ import annotations

import asyncio

__all__ = ["cancel_and_wait"]


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
