"""Shared fixtures. Keep them thin: the machinery lives in tests/helpers.py.

Every test runs alone and in any order (the suite runs under pytest-randomly): each one
gets its own home, ports and environment. `connect()` and `apply_to_process()` write
MLflow's and BentoML's variables into os.environ; the two autouse fixtures below put
the environment back after each test and each module, so nothing one test set leaks
into the next.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from helpers import free_port as _free_port


def _restore(saved: dict[str, str]) -> None:
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(autouse=True, scope="module")
def _module_environment() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    _restore(saved)


@pytest.fixture(autouse=True)
def _test_environment() -> Iterator[None]:
    saved = dict(os.environ)
    yield
    _restore(saved)


@pytest.fixture
def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    return _free_port()
