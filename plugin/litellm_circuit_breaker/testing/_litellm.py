"""Keep LiteLLM's global callback state from leaking between tests or benchmark runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["restored_litellm_callbacks"]

# LiteLLM copies ``litellm.callbacks`` into the other lists as calls run, so
# removing a callback means restoring all six.
CALLBACK_LISTS = (
    "callbacks",
    "success_callback",
    "failure_callback",
    "_async_success_callback",
    "_async_failure_callback",
    "input_callback",
)


@contextmanager
def restored_litellm_callbacks() -> Iterator[None]:
    """On exit, put every LiteLLM callback list back as it was on entry."""
    import litellm  # noqa: PLC0415 - the testing package must import without it

    saved = {name: list(getattr(litellm, name)) for name in CALLBACK_LISTS}
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(litellm, name, value)
