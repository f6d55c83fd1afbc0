"""The one exception type for user errors: the CLI prints its message on one line."""


class ClarepsError(Exception):
    """Bad input or a refused operation, with a message that names the problem."""
