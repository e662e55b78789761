"""The one error type of the training side."""

from __future__ import annotations


class TrainError(ValueError):
    """Something the user asked for cannot be trained; the message says what, in one sentence.

    The CLI prints the message without a traceback, so it must name the problem
    (the column, the file, the valid choices) rather than describe an internal state.
    """


class LifecycleError(ValueError):
    """A registry move, gate or retraining that cannot be done; one sentence, printed without a traceback."""


class GateRefused(LifecycleError):
    """The promotion gate said no; `verdict` holds the comparison the CLI prints."""

    def __init__(self, message: str, verdict: object) -> None:
        super().__init__(message)
        self.verdict = verdict


class RetrainBusy(LifecycleError):
    """Another retraining of the same model holds the lock."""
