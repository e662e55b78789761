"""The README is where users read the settings: every VIGIL_* variable must be in it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_documented_in_the_readme() -> None:
    code = (ROOT / "vigil" / "config.py").read_text()
    readme = (ROOT / "README.md").read_text()
    names = set(re.findall(r'"(VIGIL_[A-Z0-9_]+)"', code))
    assert len(names) > 20
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert not missing, f"settings missing from README.md: {missing}"


def test_the_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and re.search(r"^make test$", ci, re.M)
