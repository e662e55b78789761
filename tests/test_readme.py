"""The README is where users read the settings: every VIGIL_* variable must be in it."""

import dataclasses
import re
from pathlib import Path

from vigil import config

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_settings_tables_are_the_declared_settings() -> None:
    """Each section's table in the README is what `vigil config --markdown` prints for it."""
    readme = (ROOT / "README.md").read_text()
    documented = set()
    for section in config.SECTIONS:
        match = re.search(rf"^\*\*{re.escape(section)}\*\*[^\n]*\n\n(\| variable .*?)(?:\n\n|\Z)", readme, re.S | re.M)
        assert match, f"README.md has no settings table for {section!r}"
        assert match.group(1) == config.settings_table(section), f"README table {section!r} is out of date: " \
            "paste the output of `vigil config --markdown`"
        documented |= set(re.findall(r"^\| `(VIGIL_[A-Z0-9_]+)`", match.group(1), re.M))
    assert documented == {config.env_name(f.name) for f in dataclasses.fields(config.Settings)}


def test_the_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and re.search(r"^make test$", ci, re.M)
