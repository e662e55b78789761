"""Stages as registry aliases and tags, and the promotion history kept on the registry.

MLflow 3 deprecates model stages and keeps no alias history, so Vigil maps its stages
onto what MLflow does keep:

    Stage         registry alias   version tag vigil.stage
    development   (none)           development   (or no tag: a freshly trained version)
    staging       challenger       staging
    production    champion         production
    archived      (none)           archived

The alias is the switch (a service started on models:/NAME@champion follows it); the
tag lets `vigil versions` show stages that have no alias. At most one version holds
each alias, so promoting a version to a stage moves the previous holder down: the
old challenger back to development, the old champion to archived.

Every move is recorded as one tag on the registered model, `vigil.move.<seq>`, whose
value is the move as JSON (who, when, why, from, to, version, forced, kind, the
champion it replaced). Any machine that reaches the registry can therefore read the
history, and `rollback` knows the previous champion. The oldest tags are pruned
beyond `HISTORY_LIMIT` moves.
"""

from __future__ import annotations

import getpass
import json
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from lifecycle.errors import LifecycleError
from vigil.config import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEVELOPMENT, STAGING, PRODUCTION, ARCHIVED = "development", "staging", "production", "archived"
STAGES = (DEVELOPMENT, STAGING, PRODUCTION, ARCHIVED)
ALIAS_OF = {STAGING: "challenger", PRODUCTION: "champion"}
TAG_STAGE = "vigil.stage"
TAG_MOVE_PREFIX = "vigil.move."
HISTORY_LIMIT = 200
MAX_REASON_CHARS = 500

# Move kinds: who decided it.
MANUAL, AUTO, RETRAIN, ROLLBACK = "manual", "auto", "retrain", "rollback"


@dataclass(frozen=True)
class Move:
    """One recorded change of a version's stage."""

    seq: int
    model: str
    version: str
    from_stage: str
    to_stage: str
    actor: str
    at: float  # unix seconds
    reason: str
    forced: bool = False
    kind: str = MANUAL
    previous_champion: str | None = None  # set on moves into production

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> "Move":
        data = json.loads(raw)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @property
    def when(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.at))

    def describe(self) -> str:
        forced = " (forced)" if self.forced else ""
        return f"{self.model} v{self.version}: {self.from_stage} -> {self.to_stage}{forced} by {self.actor}: {self.reason}"


def actor_of(settings: Settings, actor: str | None = None) -> str:
    """Who a move is recorded as: explicit, VIGIL_ACTOR, or the OS user."""
    if actor:
        return actor
    if settings.actor:
        return settings.actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


def stage_of(version: Any, aliases: dict[str, str]) -> str:
    """A version's stage: the alias wins over the tag (the alias is what serves)."""
    number = str(version.version)
    for stage, alias in ALIAS_OF.items():
        if aliases.get(alias) == number:
            return stage
    tagged = version.tags.get(TAG_STAGE, DEVELOPMENT)
    # A stale "production"/"staging" tag without the alias (alias moved by hand): say so honestly.
    return tagged if tagged in (DEVELOPMENT, ARCHIVED) else DEVELOPMENT


def history(client: "MlflowClient", name: str) -> list[Move]:
    """All recorded moves of `name`, oldest first."""
    return _moves(_model_tags(client, name))


def record(client: "MlflowClient", move: Move) -> Move:
    """Append `move` to the registry history (numbered after the latest), prune the oldest."""
    tags = _model_tags(client, move.model)
    seqs = sorted(int(k[len(TAG_MOVE_PREFIX):]) for k in tags if _is_move_key(k))
    seq = (seqs[-1] + 1) if seqs else 1
    stored = Move(**{**asdict(move), "seq": seq, "reason": move.reason[:MAX_REASON_CHARS]})
    client.set_registered_model_tag(move.model, _key(seq), stored.to_json())
    for old in seqs[: max(0, len(seqs) + 1 - HISTORY_LIMIT)]:
        client.delete_registered_model_tag(move.model, _key(old))
    return stored


def _key(seq: int) -> str:
    return f"{TAG_MOVE_PREFIX}{seq:06d}"


def _is_move_key(key: str) -> bool:
    return key.startswith(TAG_MOVE_PREFIX) and key[len(TAG_MOVE_PREFIX):].isdigit()


def _moves(tags: dict[str, str]) -> list[Move]:
    moves = []
    for key in sorted(k for k in tags if _is_move_key(k)):
        try:
            moves.append(Move.from_json(tags[key]))
        except (ValueError, TypeError):  # a hand-edited tag must not break `vigil versions`
            continue
    return moves


def _model_tags(client: "MlflowClient", name: str) -> dict[str, str]:
    return dict(registered_model(client, name).tags)


def registered_model(client: "MlflowClient", name: str) -> Any:
    """The registered model, or a LifecycleError naming it."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        raise LifecycleError(f"no registered model named {name!r}; train one with `vigil train --name {name}`") from None
