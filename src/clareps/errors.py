"""The one exception type for user errors: the CLI prints its message on one line."""


class ClarepsError(Exception):
    """Bad input or a refused operation, with a message that names the problem."""


_INTERRUPT_NOTE = ["no resumable work was kept; rerun the same command to start again"]


def interrupt_note(note: str) -> None:
    """Say what an interrupted command leaves behind and how to go on; the CLI prints it on CTRL-C."""
    _INTERRUPT_NOTE[0] = note


def interrupt_message() -> str:
    return f"interrupted: {_INTERRUPT_NOTE[0]}"
