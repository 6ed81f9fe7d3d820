"""The one error type users see.

Every problem with user input (a file, a column, a value, an option) raises `MmoeError` with a
single line that names the place and says what was expected. The CLI prints that line and exits
with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MmoeError(ValueError):
    """Bad input: the message names the file, column, row or option and what was expected."""

    def __init__(self, message: str) -> None:
        # One line, always: the CLI prints it as is.
        super().__init__(" ".join(str(message).split()))


class TrainingDiverged(MmoeError):
    """The training loss became infinite or NaN (usually too high a learning rate). Its own type so
    that tuning can treat a diverged trial as hopeless rather than as a broken worker."""


class DeadTaskWarning(UserWarning):
    """A task's outputs became the same on every validation row: the units feeding its output
    stopped firing on every row (ReLUs "died", usually after too large a step), so it gets no
    gradient back and stays at its base rate (AUC .5) for the rest of training. Training goes on;
    a lower learning rate, or another seed, usually avoids it."""
