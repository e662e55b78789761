"""whylogs 1.6.4 on numpy 2, in one place.

whylogs is unmaintained upstream and still refers to ``np.unicode_`` (removed in numpy
2.0) when it types a string column, so logging any string column crashes. Aliasing it
to ``np.str_`` — what numpy 1 defined it as — is the whole fix. Import whylogs through
this module, never directly, so the shim is always applied first.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from whylogs.core import DatasetProfileView


def _apply_shim() -> None:
    if not hasattr(np, "unicode_"):
        np.unicode_ = np.str_  # type: ignore[attr-defined]
    os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "True")
    # whylogs logs an INFO line per column for every profile it reads ("Attempting to read
    # profile file as delimited ..."): at a profile a second per producer that buries the
    # monitor's own log and costs its CPU. Its warnings still show.
    logging.getLogger("whylogs").setLevel(logging.WARNING)


# whylogs' stubs import these for its experimental embedding metrics, which Vigil does not
# use; they pull in sklearn and scipy: 1.0-1.3 s of the 1.6-2.0 s of CPU whylogs took to
# import (measured), paid by every worker's profile agent at start, niced on the serving core.
_UNUSED_EXTRAS = ("sklearn.cluster", "sklearn.decomposition", "sklearn.metrics.pairwise")


def whylogs() -> Any:
    """The `whylogs` module, with the numpy 2 shim applied."""
    _apply_shim()
    # Hide the extras only where no one else can be importing them meanwhile (one thread) and
    # no one has (sklearn not loaded): an entry of None makes `import x` fail, and whylogs
    # falls back to its stubs; the entries are removed after, so a later import works. (No
    # shortcut on "whylogs" in sys.modules: another thread may be half-way through importing
    # it, and `import` is what waits for that one to finish.)
    hidden = []
    if "whylogs" not in sys.modules and "sklearn" not in sys.modules and threading.active_count() == 1:
        hidden = [name for name in _UNUSED_EXTRAS if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        import whylogs as why
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return why


def profile(frame: "pd.DataFrame") -> "DatasetProfileView":
    """Profile a DataFrame. NaN/inf columns are expected, so numpy's warnings are silenced."""
    why = whylogs()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return why.log(frame).view()


def deserialize(blob: bytes) -> "DatasetProfileView":
    """A profile view from `DatasetProfileView.serialize()` bytes (ValueError if not one)."""
    whylogs()
    from whylogs.core import DatasetProfileView

    try:
        return DatasetProfileView.deserialize(blob)
    except Exception as exc:  # protobuf raises several unrelated types on garbage
        raise ValueError(f"not a whylogs profile: {type(exc).__name__}") from None


def merge(left: "DatasetProfileView | None", right: "DatasetProfileView") -> "DatasetProfileView":
    """Merge two views (``None`` is the empty profile); merging NaN/inf stats is quiet."""
    if left is None:
        return right
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return left.merge(right)
