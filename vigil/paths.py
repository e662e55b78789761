"""Where the project's own files are: the one definition of the project root.

service.py, bentofile.yaml, constraints.txt and deploy/ live there; `bentoml serve`
imports the service from it, `vigil export` builds the bento from it.
"""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
