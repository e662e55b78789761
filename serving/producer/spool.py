"""The on-disk spool for profile messages the monitor could not take yet.

One file per message (exactly the HTTP body to resend), named so that sorting by name
is sorting by spool time. Several workers may share the directory; one of them at a
time replays it, holding an advisory lock.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import time
from pathlib import Path

_SUFFIX = ".json"


class Spool:
    """A size-capped, ordered directory of pending messages."""

    def __init__(self, directory: Path, cap_bytes: int, suffix: str = _SUFFIX) -> None:
        self.directory = directory
        self.cap_bytes = cap_bytes
        self.suffix = suffix
        self._seq = itertools.count()
        self._bytes = 0
        self._scanned_at = 0.0
        self._lock_file: int | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.rescan()

    def rescan(self) -> None:
        """Recount the bytes on disk (other workers append and replay too)."""
        total = 0
        for path in self.files():
            try:
                total += path.stat().st_size
            except FileNotFoundError:  # replayed by another worker meanwhile
                continue
        self._bytes = total
        self._scanned_at = time.monotonic()

    @property
    def bytes(self) -> int:
        if time.monotonic() - self._scanned_at > 1.0:
            self.rescan()
        return self._bytes

    def files(self) -> list[Path]:
        """Spooled messages, oldest first."""
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(self.suffix) and not n.startswith("."))
        except FileNotFoundError:
            return []
        return [self.directory / n for n in names]

    def append(self, body: bytes) -> bool:
        """Store one message; False (nothing written) if it would pass the cap."""
        if self.bytes + len(body) > self.cap_bytes:
            return False
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq):08d}{self.suffix}"
        tmp = self.directory / f".tmp-{name}"
        tmp.write_bytes(body)
        os.replace(tmp, self.directory / name)  # atomic: a replayer never sees half a file
        self._bytes += len(body)
        return True

    def remove(self, path: Path) -> None:
        try:
            size = path.stat().st_size
            path.unlink()
            self._bytes = max(0, self._bytes - size)
        except FileNotFoundError:
            pass

    def try_lock(self) -> bool:
        """Become the replayer unless another worker is; held until `unlock`."""
        if self._lock_file is not None:
            return True
        fd = os.open(self.directory / ".replay.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_file = fd
        return True

    def unlock(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            os.close(self._lock_file)
            self._lock_file = None
