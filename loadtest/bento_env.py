"""A bento as a container would run it: its own requirements in a fresh venv, nothing else.

`bentoml containerize` builds an image that installs only the bento's
`env/python/requirements.txt` and serves the bento's `src/`. Without a Docker engine the
closest stand-in is a virtual environment made from the bare interpreter with exactly
those requirements (no editable install, no checkout on sys.path), a fresh BENTOML_HOME
the archive is imported into, and `bentoml serve` started from an unrelated folder.

The venv is cached under .vigil/cache/bento-venv/<hash of the requirements>, so only a
change of the bento's requirements pays the install again (~30 s from a warm pip cache).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from vigil.paths import PROJECT_ROOT as ROOT

CACHE = ROOT / ".vigil" / "cache" / "bento-venv"
# Only what a container's environment would have: no PYTHONPATH, no venv of ours on PATH.
PASSED_THROUGH = ("HOME", "LANG", "LC_ALL", "TMPDIR", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS")


@dataclass(frozen=True)
class CleanBento:
    """A bento imported into its own BentoML home, with the venv that serves it."""

    bin: Path  # the clean venv's bin/
    bentoml_home: Path
    tag: str  # name:version as imported

    def env(self, **vigil: str) -> dict[str, str]:
        """The environment to run the clean venv's `bentoml` with (plus VIGIL_* settings)."""
        env = {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}
        env["PATH"] = f"{self.bin}:/usr/local/bin:/usr/bin:/bin"
        env["BENTOML_HOME"] = str(self.bentoml_home)
        env.update(vigil)
        return env

    def serve_argv(self, port: int) -> list[str]:
        return [str(self.bin / "bentoml"), "serve", self.tag, "--host", "127.0.0.1", "--port", str(port)]


def bento_requirements(archive: Path) -> str:
    """The `env/python/requirements.txt` inside a bento archive."""
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.lstrip("./") == "env/python/requirements.txt")
        return tar.extractfile(member).read().decode()  # type: ignore[union-attr]


def _base_python() -> str:
    """The interpreter our venv was made from, so the clean venv shares nothing with ours."""
    return getattr(sys, "_base_executable", sys.executable)


def clean_venv(requirements: str) -> Path:
    """A venv holding exactly `requirements` (built once per distinct requirements); its bin/."""
    digest = hashlib.sha256(requirements.encode()).hexdigest()[:16]
    folder = CACHE / digest
    done = folder / ".complete"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test processes must not build the same venv
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)  # a half-built one from an interrupted run
            subprocess.run([_base_python(), "-m", "venv", str(folder)], check=True, timeout=120)
            (folder / "requirements.txt").write_text(requirements)
            pip = [str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            subprocess.run([*pip, "-r", str(folder / "requirements.txt")], check=True, timeout=900,
                           env={**os.environ, "PIP_REQUIRE_VIRTUALENV": "1"})
            done.write_text(requirements)
    return folder / "bin"


def import_bento(archive: Path, home: Path) -> CleanBento:
    """Import `archive` into the empty BentoML home `home` with the clean venv's bentoml."""
    bin_dir = clean_venv(bento_requirements(archive))
    home.mkdir(parents=True, exist_ok=True)
    bento = CleanBento(bin_dir, home, "")
    done = subprocess.run([str(bin_dir / "bentoml"), "import", str(archive)], env=bento.env(), cwd=home.parent,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    # 'Bento(tag="vigil-iris:abc") imported.'
    tag = done.stdout.split('tag="', 1)[1].split('"', 1)[0]
    return CleanBento(bin_dir, home, tag)
