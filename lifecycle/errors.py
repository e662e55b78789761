"""The one error type of the training side."""

from __future__ import annotations


class TrainError(ValueError):
    """Something the user asked for cannot be trained; the message says what, in one sentence.

    The CLI prints the message without a traceback, so it must name the problem
    (the column, the file, the valid choices) rather than describe an internal state.
    """
