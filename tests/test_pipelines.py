"""The retraining pipelines as their files say: deploy/ci/Jenkinsfile and the GitHub Actions workflow.

Each file is parsed and its shell steps run in order, as the CI system would run them,
against a real registry (iris v1 in production) in a scratch workspace: `make install`
as a dry run (`make -n`), every other command for real. The workflow is also checked
against the GitHub workflow JSON schema (schemastore's, vendored by check-jsonschema, so
no network), and the Jenkinsfile's `sed` line that picks the new version is the one run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from converter import convert_version
from lifecycle.datasets import load_dataset
from lifecycle.moves import champion_version, promote
from lifecycle.training import train
from vigil.config import Settings, load
from vigil.paths import PROJECT_ROOT
from helpers import clone_home

CI = PROJECT_ROOT / "deploy" / "ci"
WORKFLOW = CI / "github-actions-retrain.yml"
JENKINSFILE = CI / "Jenkinsfile"
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = load({"VIGIL_HOME": str(tmp_path_factory.mktemp("vigil-home"))})
    first = train(settings, reference_rows=200)
    convert_version(settings, f"models:/iris/{first.version}", progress=False)
    promote(settings, "iris", first.version, "production", reason="initial")
    return settings


@pytest.fixture
def workspace(tmp_path: Path, registry: Settings) -> tuple[Path, Settings, Path]:
    """(a checkout-like folder, this test's registry copy, recent labelled rows)."""
    work = tmp_path / "work"
    work.mkdir()
    for entry in PROJECT_ROOT.iterdir():  # the checkout, minus outputs the steps write
        if entry.name not in ("bentos", ".vigil", ".git", "retrain.txt"):
            (work / entry.name).symlink_to(entry)
    X, y, _ = load_dataset("iris")
    recent = tmp_path / "recent.csv"
    X.assign(target=y).sample(60, random_state=1).to_csv(recent, index=False)
    return work, clone_home(registry, tmp_path / "home"), recent


def _sh(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    if command.strip() == "make install":
        command = "make -n install"  # the dry run: installing is what `make install` in this checkout did
    done = subprocess.run(["bash", "-eo", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{command!r} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _base_env(settings: Settings) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    # COLUMNS: rich would wrap the history table (and the actor in it) at 80 columns.
    return keep | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "COLUMNS": "400"}


# -- GitHub Actions ----------------------------------------------------------------------


def test_the_workflow_matches_the_github_workflow_schema() -> None:
    tool = Path(sys.executable).with_name("check-jsonschema")
    done = subprocess.run([str(tool), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _expression(expr: str, context: dict[str, str]) -> str:
    """A `${{ ... }}` expression of this workflow; an unknown one fails the test (teach it here)."""
    expr = expr.strip()
    if expr in context:
        return context[expr]
    if "||" in expr:  # `a || 'default'`
        left, right = (part.strip() for part in expr.split("||", 1))
        return context.get(left) or right.strip("'")
    raise AssertionError(f"the workflow uses an expression this test does not know: {expr}")


def _substitute(text: str, context: dict[str, str]) -> str:
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: _expression(m.group(1), context), text)


def test_the_workflow_steps_run_in_order(workspace) -> None:
    work, settings, recent = workspace
    spec = yaml.safe_load(WORKFLOW.read_text())
    triggers = spec.get("on") or spec[True]  # YAML 1.1 reads the key `on` as true
    inputs = {f"inputs.{k}": str(v.get("default", "")).lower() if isinstance(v.get("default"), bool)
              else str(v.get("default", "")) for k, v in triggers["workflow_dispatch"]["inputs"].items()}
    context = inputs | {"secrets.VIGIL_TRACKING_URI": settings.mlflow_uri, "vars.VIGIL_RETRAIN_DATA": str(recent),
                        "github.actor": "ci", "github.run_id": "7"}
    job = spec["jobs"]["retrain"]
    output = work.parent / "github_output"
    output.touch()
    env = _base_env(settings) | {"GITHUB_OUTPUT": str(output), "VIGIL_HOME": str(work.parent / "runner-home")}
    env |= {k: _substitute(str(v), context) for k, v in job["env"].items()}
    ran, uses = [], []
    for step in job["steps"]:
        if "uses" in step:
            uses.append(step["uses"].split("@")[0])
            continue
        condition = step.get("if", "true")
        if condition not in ("always()", "${{ always() }}") and _substitute(condition, context) != "true":
            continue
        done = _sh(_substitute(step["run"], context), work, env)
        ran.append((step["name"], done.stdout))
        for line in output.read_text().splitlines():  # what the step wrote to $GITHUB_OUTPUT
            key, _, value = line.partition("=")
            context[f"steps.{step.get('id')}.outputs.{key}"] = value
        output.write_text("")
    assert [name for name, _ in ran] == ["Install", "Retrain (train, register, convert, stage)", "Convert (parity proof)",
                                        "Gate and promote", "Build bento", "History"]
    assert uses == ["actions/checkout", "actions/setup-python", "actions/upload-artifact"]
    assert context["steps.retrain.outputs.version"] == "2"
    assert champion_version(settings, "iris") == "2"
    artifact = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert list(work.glob(artifact["with"]["path"])), "the upload step's path matches no bento"
    assert "github:ci/run-7" in ran[-1][1] and "manual retraining (drift windows" in ran[-1][1]


# -- Jenkins -----------------------------------------------------------------------------


def _groovy(text: str) -> str:
    """A Groovy string literal's value: `\\\\` is one backslash."""
    return text.replace("\\\\", "\\")


def _jenkins_stages(text: str) -> list[tuple[str, list[str], str | None]]:
    """(stage name, its `sh '...'` commands, its `when` expression) in file order, plus `post` as a stage."""
    stages = []
    marks = [(m.start(), m.group(1)) for m in re.finditer(r"stage\('([^']+)'\)", text)]
    post = text.index("post {")
    for i, (start, name) in enumerate(marks):
        end = marks[i + 1][0] if i + 1 < len(marks) else post
        block = text[start:end]
        when = re.search(r"when \{ expression \{ ([^}]+) \} \}", block)
        stages.append((name, re.findall(r"sh '([^']*)'", block), when.group(1).strip() if when else None))
    stages.append(("post", re.findall(r"sh '([^']*)'", text[post:]), None))
    return stages


def test_the_jenkinsfile_stages_run_in_order_with_its_own_sed_line(workspace) -> None:
    work, settings, recent = workspace
    text = JENKINSFILE.read_text()
    params = dict(re.findall(r"(?:string|booleanParam)\(name: '(\w+)', defaultValue: '?([^',]*)'?", text))
    assert set(params) == {"MODEL", "RECENT_DATA", "PROMOTE", "reason"}
    params["RECENT_DATA"] = str(recent)  # the build's parameter: where this run's recent rows are
    env = _base_env(settings) | params | {"BUILD_NUMBER": "7", "BUILD_TAG": "jenkins-retrain-7"}
    environment = dict(re.findall(r"^\s+(VIGIL_\w+) = (.+)$", text[text.index("environment {"):], re.M))
    assert environment.pop("VIGIL_TRACKING_URI") == "credentials('vigil-tracking-uri')"
    env["VIGIL_TRACKING_URI"] = settings.mlflow_uri
    for key, value in environment.items():  # "jenkins:${env.BUILD_TAG}", "${env.WORKSPACE}/.vigil"
        value = value.strip().strip('"').replace("${env.BUILD_TAG}", env["BUILD_TAG"])
        env[key] = value.replace("${env.WORKSPACE}", str(work))
    sed = re.search(r'script: "(sed [^"]+)"\)', text)
    assert sed is not None, "the Jenkinsfile no longer picks the version with sed"
    ran = []
    for name, commands, when in _jenkins_stages(text):
        if when is not None:
            assert when.startswith("params.")
            if params[when.removeprefix("params.")] != "true":
                continue
        for command in commands:
            done = _sh(command, work, env)
            ran.append((name, command, done.stdout))
        if name == "Retrain":  # env.CANDIDATE = sh(returnStdout: true, script: "sed ...").trim()
            env["CANDIDATE"] = _sh(_groovy(sed.group(1)), work, env).stdout.strip()
    assert [name for name, _, _ in ran] == ["Install", "Retrain", "Convert", "Gate and promote", "Build bento", "post"]
    assert env["CANDIDATE"] == "2"
    assert champion_version(settings, "iris") == "2"
    archived = re.search(r"archiveArtifacts artifacts: '([^']+)'", text)
    assert archived is not None and list(work.glob(archived.group(1))), "archiveArtifacts matches no bento"
    assert "jenkins:jenkins-retrain-7" in ran[-1][2] and "(build 7)" in ran[-1][2]
    assert (work / ".vigil").is_dir()  # VIGIL_HOME = $WORKSPACE/.vigil
    shutil.rmtree(work / "bentos", ignore_errors=True)
