"""Moving versions between stages on the registry: promote, demote, archive, rollback.

Each function moves the alias first (the switch services follow), then the stage
tags, then records the move in the registry history (see lifecycle/stages.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lifecycle import gate as gate_mod
from lifecycle import stages as S
from lifecycle.errors import GateRefused, LifecycleError
from vigil import artifacts as A
from vigil.config import Settings
from vigil.registry import connect

if TYPE_CHECKING:
    from mlflow import MlflowClient

TARGETS = (S.STAGING, S.PRODUCTION)


@dataclass(frozen=True)
class VersionRow:
    """One line of `vigil versions`."""

    version: str
    stage: str
    metrics: dict[str, float]
    primary_metric: str
    parity: str
    servable: str
    created: float  # unix seconds
    last_move: S.Move | None


def versions(settings: Settings, name: str) -> list[VersionRow]:
    """Every version of `name`, newest first, with stage, metrics and its last recorded move."""
    client = connect(settings)
    model = S.registered_model(client, name)
    aliases = {k: str(v) for k, v in model.aliases.items()}
    moves = S.history(client, name)
    last = {m.version: m for m in moves}  # later moves overwrite earlier ones
    rows = []
    for v in sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: -int(v.version)):
        metrics = {
            k[len(A.TAG_METRIC_PREFIX):]: float(val)
            for k, val in v.tags.items()
            if k.startswith(A.TAG_METRIC_PREFIX) and _is_float(val)
        }
        rows.append(VersionRow(
            version=str(v.version), stage=S.stage_of(v, aliases), metrics=metrics,
            primary_metric=v.tags.get(A.TAG_PRIMARY_METRIC, ""), parity=v.tags.get(A.TAG_PARITY, "-"),
            servable=v.tags.get(A.TAG_SERVABLE, "-"), created=v.creation_timestamp / 1000.0,
            last_move=last.get(str(v.version)),
        ))
    return rows


def promote(
    settings: Settings,
    name: str,
    version: str,
    to: str,
    reason: str = "",
    force: bool = False,
    actor: str | None = None,
    kind: str = S.MANUAL,
    recent: tuple[float, float] | None = None,
) -> S.Move:
    """Move `version` to staging (alias challenger) or production (alias champion).

    Production passes the promotion gate first (lifecycle/gate.py); `force` skips it
    and is recorded. Raises GateRefused (with the verdict) or LifecycleError.
    """
    if to not in TARGETS:
        raise LifecycleError(f"cannot promote to {to!r}; choose staging or production")
    client = connect(settings)
    model = S.registered_model(client, name)
    candidate = _version(client, name, version)
    aliases = {k: str(v) for k, v in model.aliases.items()}
    current = S.stage_of(candidate, aliases)
    if current == to:
        raise LifecycleError(f"{name} v{candidate.version} is already in {to}")
    if current == S.PRODUCTION:
        raise LifecycleError(f"{name} v{candidate.version} is the champion; use `vigil demote` to move it down")
    previous = aliases.get(S.ALIAS_OF[to])
    if to == S.PRODUCTION:
        champion = _version(client, name, previous) if previous else None
        verdict = gate_mod.evaluate(settings, candidate, champion, recent)
        if not verdict.passed and not force:
            raise GateRefused(
                f"gate refused {name} v{candidate.version} for production: failed {', '.join(verdict.failures())}"
                " (use --force to override; it is recorded)",
                verdict,
            )
        forced = force and not verdict.passed
    else:
        forced = False
    note = reason or f"promoted to {to}"
    _switch(client, name, str(candidate.version), to, previous)
    if previous and previous != str(candidate.version):
        # The replaced holder steps down: an old champion is archived, an old challenger returns to development.
        step_down = S.ARCHIVED if to == S.PRODUCTION else S.DEVELOPMENT
        _set_stage(client, name, previous, step_down)
        S.record(client, _move(settings, name, previous, to, step_down, f"replaced by v{candidate.version}: {note}",
                               actor, kind))
    return S.record(client, _move(settings, name, str(candidate.version), current, to, note, actor, kind,
                                  forced=forced, previous_champion=previous if to == S.PRODUCTION else None))


def demote(
    settings: Settings, name: str, version: str, reason: str = "", force: bool = False, actor: str | None = None
) -> S.Move:
    """One step down: production -> staging, staging -> development.

    Demoting the champion leaves the model without one (services on @champion stop
    resolving), so it needs `force`; `rollback` is the usual way to replace it.
    """
    client = connect(settings)
    model = S.registered_model(client, name)
    v = _version(client, name, version)
    aliases = {k: str(val) for k, val in model.aliases.items()}
    current = S.stage_of(v, aliases)
    target = {S.PRODUCTION: S.STAGING, S.STAGING: S.DEVELOPMENT}.get(current)
    if target is None:
        raise LifecycleError(f"{name} v{v.version} is in {current}; only staging and production versions can be demoted")
    if current == S.PRODUCTION and not force:
        raise LifecycleError(
            f"{name} v{v.version} is the champion; demoting it leaves {name} without one. "
            f"Use `vigil rollback {name}` to restore the previous champion, or --force"
        )
    client.delete_registered_model_alias(name, S.ALIAS_OF[current])
    if target == S.STAGING:
        challenger = aliases.get(S.ALIAS_OF[S.STAGING])
        _switch(client, name, str(v.version), S.STAGING, challenger)
        if challenger and challenger != str(v.version):
            _set_stage(client, name, challenger, S.DEVELOPMENT)
    _set_stage(client, name, str(v.version), target)
    return S.record(client, _move(settings, name, str(v.version), current, target, reason or "demoted", actor,
                                  S.MANUAL, forced=current == S.PRODUCTION))


def archive(
    settings: Settings, name: str, version: str, reason: str = "", force: bool = False, actor: str | None = None
) -> S.Move:
    """Archive a version: no alias, stage archived. The champion needs `force`."""
    client = connect(settings)
    model = S.registered_model(client, name)
    v = _version(client, name, version)
    aliases = {k: str(val) for k, val in model.aliases.items()}
    current = S.stage_of(v, aliases)
    if current == S.ARCHIVED:
        raise LifecycleError(f"{name} v{v.version} is already archived")
    if current == S.PRODUCTION and not force:
        raise LifecycleError(
            f"{name} v{v.version} is the champion; archiving it leaves {name} without one. "
            f"Promote or roll back to another version first, or use --force"
        )
    if current in S.ALIAS_OF:
        client.delete_registered_model_alias(name, S.ALIAS_OF[current])
    _set_stage(client, name, str(v.version), S.ARCHIVED)
    return S.record(client, _move(settings, name, str(v.version), current, S.ARCHIVED, reason or "archived", actor,
                                  S.MANUAL, forced=current == S.PRODUCTION))


def previous_champion(moves: list[S.Move], champion: str | None) -> str | None:
    """The champion before the current one, from the history (None if never recorded)."""
    for move in reversed(moves):
        if move.to_stage == S.PRODUCTION and move.version == champion:
            return move.previous_champion
    return None


def rollback(
    settings: Settings,
    name: str,
    to: str | None = None,
    reason: str = "",
    actor: str | None = None,
    kind: str = S.ROLLBACK,
) -> S.Move:
    """Make the previous champion (or version `to`) the champion again, skipping the gate.

    The gate is skipped because the target already served as champion; a version
    that is not servable is still refused. Rolling back twice returns to where you started.
    """
    client = connect(settings)
    model = S.registered_model(client, name)
    aliases = {k: str(v) for k, v in model.aliases.items()}
    champion = aliases.get(S.ALIAS_OF[S.PRODUCTION])
    target = to or previous_champion(S.history(client, name), champion)
    if target is None:
        raise LifecycleError(f"no previous champion of {name} is recorded; name one with --to VERSION")
    v = _version(client, name, target)
    if str(v.version) == champion:
        raise LifecycleError(f"{name} v{v.version} is already the champion")
    if v.tags.get(A.TAG_SERVABLE) != "true":
        raise LifecycleError(f"{name} v{v.version} is not servable (vigil.servable={v.tags.get(A.TAG_SERVABLE, 'unset')}); "
                             "convert it first")
    from_stage = S.stage_of(v, aliases)
    note = reason or (f"rollback from v{champion}" if champion else "rollback")
    _switch(client, name, str(v.version), S.PRODUCTION, champion)
    if champion:
        _set_stage(client, name, champion, S.ARCHIVED)
        S.record(client, _move(settings, name, champion, S.PRODUCTION, S.ARCHIVED, f"rolled back: {note}", actor, kind))
    return S.record(client, _move(settings, name, str(v.version), from_stage, S.PRODUCTION, note, actor, kind,
                                  previous_champion=champion))


def champion_version(settings: Settings, name: str) -> str | None:
    """The version holding the champion alias, or None."""
    model = S.registered_model(connect(settings), name)
    version = model.aliases.get(S.ALIAS_OF[S.PRODUCTION])
    return str(version) if version is not None else None


# -- helpers -----------------------------------------------------------------------
def _switch(client: "MlflowClient", name: str, version: str, stage: str, holder: str | None) -> None:
    """Point the stage's alias at `version`; if `version` held the other alias, drop it."""
    client.set_registered_model_alias(name, S.ALIAS_OF[stage], version)
    other = S.ALIAS_OF[S.STAGING if stage == S.PRODUCTION else S.PRODUCTION]
    held = client.get_registered_model(name).aliases.get(other)
    if held is not None and str(held) == version:
        client.delete_registered_model_alias(name, other)
    _set_stage(client, name, version, stage)


def _set_stage(client: "MlflowClient", name: str, version: str, stage: str) -> None:
    client.set_model_version_tag(name, version, S.TAG_STAGE, stage)


def _version(client: "MlflowClient", name: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    if not str(version).isdigit():
        raise LifecycleError(f"version must be a number, got {version!r}")
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        raise LifecycleError(f"{name} has no version {version}") from None


def _move(
    settings: Settings, name: str, version: str, src: str, dst: str, reason: str, actor: str | None, kind: str,
    forced: bool = False, previous_champion: str | None = None,
) -> S.Move:
    return S.Move(seq=0, model=name, version=version, from_stage=src, to_stage=dst,
                  actor=S.actor_of(settings, actor), at=time.time(), reason=reason, forced=forced, kind=kind,
                  previous_champion=previous_champion)


def _is_float(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return True
