"""whylogs 1.6.4 on numpy 2, in one place.

whylogs is unmaintained upstream and still refers to ``np.unicode_`` (removed in numpy
2.0) when it types a string column, so logging any string column crashes. Aliasing it
to ``np.str_`` — what numpy 1 defined it as — is the whole fix. Import whylogs through
this module, never directly, so the shim is always applied first.
"""

from __future__ import annotations

import io
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
    global _classes_reused
    if not _classes_reused:
        _reuse_component_classes()
        _serialize_in_memory()
        _classes_reused = True
    return why


_classes_reused = False
# (value type, type id, registries) -> the component class whylogs makes for them.
_component_classes: dict[tuple[Any, int, Any], type] = {}
whylogs_from_protobuf: Any = None  # whylogs' own MetricComponent.from_protobuf (the tests compare)


def _reuse_component_classes() -> None:
    """Deserialize metric components without defining a new class for each one.

    whylogs' `MetricComponent.from_protobuf` defines a `DeserializedComponent` subclass of
    the generic `MetricComponent[M]` every time it reads a component (~12 per column), and
    class creation with typing's generics was 40 % of the monitor's CPU under a fleet of
    producers (24 % in `Generic.__init_subclass__` alone). This is the same function with
    the class made once per (value type, type id, registries) and reused: the instances,
    their aggregators, serializers and merges are what whylogs makes (a merge builds its
    result with `self.__class__`, and nothing compares component classes).
    """
    import whylogs_sketching as ds
    from whylogs.core.metrics.metric_components import MetricComponent

    value_types = {"n": int, "d": float, "frequent_items": ds.frequent_strings_sketch, "hll": ds.hll_sketch,
                   "kll": ds.kll_doubles_sketch}

    def component_class(mtype: Any, type_id: int, registries: Any) -> type:
        class DeserializedComponent(MetricComponent):  # type: ignore[type-arg]
            def __deepcopy__(self, memo: Any) -> Any:
                return DeserializedComponent.from_protobuf(self.to_protobuf())

        DeserializedComponent.mtype, DeserializedComponent.type_id = mtype, type_id  # type: ignore[attr-defined]
        DeserializedComponent.registries = registries
        return DeserializedComponent

    def from_protobuf(cls: Any, msg: Any, registries: Any = None) -> Any:
        mtype = value_types.get(msg.WhichOneof("value"))
        key = (mtype, msg.type_id, registries)
        made = _component_classes.get(key)
        if made is None:
            made = _component_classes[key] = component_class(mtype, msg.type_id, registries)
        component = made(value=None)
        if component._deserializer is None:
            raise ValueError(f"Attempt to deserialize a type without a deserializer. Type: {mtype}. ID: {msg.type_id}")
        component._value = component._deserializer(msg=msg)
        return component

    global whylogs_from_protobuf
    whylogs_from_protobuf = MetricComponent.__dict__["from_protobuf"]
    MetricComponent.from_protobuf = classmethod(from_protobuf)  # type: ignore[method-assign]


class _InMemory:
    """Stands in for the `tempfile` module inside whylogs' profile views (see below)."""

    @staticmethod
    def TemporaryFile(*_args: Any, **_kwargs: Any) -> io.BytesIO:  # noqa: N802 (tempfile's name)
        return io.BytesIO()


def _serialize_in_memory() -> None:
    """Serialize profiles through a BytesIO, not a temporary file on disk.

    `DatasetProfileView.serialize()` writes the column chunks to `tempfile.TemporaryFile()`
    and copies them back (create, write, read, delete: a file on disk per profile). Every
    agent pays it once per slice and the monitor once per message it merges. Measured on
    an 8-column, 5,000-row profile: 2.22 ms -> 1.21 ms a serialize, byte for byte the same
    output (tests/test_profile_builder.py compares).
    """
    from whylogs.core.view import dataset_profile_view, segmented_dataset_profile_view

    dataset_profile_view.tempfile = _InMemory  # type: ignore[assignment]
    segmented_dataset_profile_view.tempfile = _InMemory  # type: ignore[assignment]


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
