"""The one exception type for user errors: the CLI prints its message on one line."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Union


class ClarepsError(Exception):
    """Bad input or a refused operation, with a message that names the problem."""


Note = Union[str, Callable[[], str]]
_INTERRUPT_NOTE: list[Note] = ["no resumable work was kept; rerun the same command to start again"]


def interrupt_note(note: Note) -> None:
    """Say what an interrupted command leaves behind and how to go on; the CLI prints it on CTRL-C. A
    callable is asked at that moment, so the line says what is there then."""
    _INTERRUPT_NOTE[0] = note


def kept_or_nothing(kept: Callable[[], bool], what: str) -> Callable[[], str]:
    """The note of a resumable stage: ``what`` was kept (and a rerun resumes) when ``kept()`` holds at
    the interrupt; else nothing was saved yet and a rerun starts again."""
    return lambda: f"{what}; rerun the same command to resume" if kept() else \
        "nothing was saved yet; rerun the same command to start again"


def interrupt_message() -> str:
    note = _INTERRUPT_NOTE[0]
    return f"interrupted: {note() if callable(note) else note}"


def any_file(folder: str | Path, pattern: str) -> Callable[[], bool]:
    """Whether ``folder`` holds a file matching ``pattern``, asked when called."""
    return lambda: any(Path(folder).glob(pattern))
