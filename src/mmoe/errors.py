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
