"""Child processes for tests and demos: a free loopback port, and stopping a whole session.

The LiteLLM proxy starts workers of its own; started with
``start_new_session=True`` they share one process group, which
:func:`stop_process_group` ends completely.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time

__all__ = ["free_port", "group_alive", "stop_process_group"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def group_alive(pgid: int) -> bool:
    """True while any process of the group is still alive."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_process_group(process: subprocess.Popen[bytes], *, grace: float = 20.0) -> None:
    """SIGTERM the process's whole session, SIGKILL what is left, and wait until it is gone."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError):  # stragglers left in the session
        os.killpg(process.pid, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while group_alive(process.pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes of group {process.pid} outlived SIGKILL")
        time.sleep(0.05)
