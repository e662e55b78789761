"""What every `vigil` subcommand shares: settings, the one-line user error, registering a subcommand."""

from __future__ import annotations

import argparse
from typing import Any, Callable

from vigil import config

Handler = Callable[[argparse.Namespace], int]


class UserError(Exception):
    """An error the user can fix; printed as one line, without a traceback."""


def load_settings() -> config.Settings:
    """The settings in force, with a bad VIGIL_* value as a UserError."""
    try:
        return config.load()
    except ValueError as exc:
        raise UserError(str(exc)) from None


def model_ref(name: str, version: str | None, alias: str | None) -> Any:
    """`--version N` or `--alias A` of model `name` as a registry reference."""
    from vigil.registry import ModelRef

    if (version is None) == (alias is None):
        raise UserError("give exactly one of --version N or --alias A")
    return ModelRef(name=name, version=version, alias=alias)


class Commands:
    """Adds subcommands to the `vigil` parser; each group module calls `add` for its own."""

    def __init__(self, subparsers: Any) -> None:
        self.subparsers = subparsers

    def add(self, name: str, func: Handler, help_: str, description: str = "") -> argparse.ArgumentParser:
        parser = self.subparsers.add_parser(
            name, help=help_, description=description or help_, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        parser.set_defaults(func=func)
        return parser
