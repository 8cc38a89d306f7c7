"""Keep LiteLLM's global callback state from leaking between tests or benchmark runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["restored_litellm_callbacks"]

from .._routers import CALLBACK_LISTS


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
