"""A throwaway PostgreSQL cluster for the topology's MLflow backend store.

Debian's `postgresql` package puts initdb/pg_ctl under /usr/lib/postgresql/<major>/bin.
PostgreSQL refuses to run as root, so as root the cluster belongs to (and runs as) the
package's `postgres` user. The cluster listens on 127.0.0.1 only, trusts local
connections (it lives for one run) and skips fsync (nothing here must survive a crash).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from vigil.procs import free_port

USER = "vigil"  # the cluster's superuser and MLflow's database owner
DATABASE = "mlflow"


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries (apt-get install postgresql)."""


def bin_dir() -> Path:
    """The newest installed PostgreSQL's bin folder."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    raise PostgresMissing("PostgreSQL is not installed: apt-get install postgresql (see .ci/system-deps)")


def _as_owner(argv: list[str]) -> list[str]:
    """Run as the `postgres` user when we are root (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", _owner(), "--", *argv]


def _owner() -> str:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PostgresMissing("running as root and there is no `postgres` user to run PostgreSQL as")


def _run(argv: list[str], log: Path) -> None:
    with open(log, "a") as out:
        done = subprocess.run(_as_owner(argv), stdout=out, stderr=subprocess.STDOUT, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed ({done.returncode}):\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def postgres_cluster(logs: Path) -> Iterator[str]:
    """initdb + start a cluster with an `mlflow` database; yields its SQLAlchemy URI, stops it after."""
    binaries = bin_dir()
    # Not under a pytest tmp folder: those are 0700 root, which the postgres user cannot enter.
    folder = Path(tempfile.mkdtemp(prefix="vigil-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam(_owner())
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data, port = folder / "data", free_port()
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / "postgres.log"
    server_log = folder / "server.log"  # written by the postgres user
    _run([str(binaries / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"], log)
    options = f"-p {port} -h 127.0.0.1 -k {folder} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    _run([str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(server_log), "-w", "-t", "60",
          "start"], log)
    try:
        _run([str(binaries / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE], log)
        # +psycopg2: SQLAlchemy 2.1 would otherwise pick psycopg 3, which Vigil does not install.
        yield f"postgresql+psycopg2://{USER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        with contextlib.suppress(Exception):
            _run([str(binaries / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], log)
        with contextlib.suppress(OSError):
            shutil.copy(server_log, logs / "postgres-server.log")
        shutil.rmtree(folder, ignore_errors=True)
