"""Shared fixtures. Keep them thin: the machinery lives in tests/helpers.py."""

from __future__ import annotations

import pytest

from helpers import free_port as _free_port


@pytest.fixture
def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return _free_port()
