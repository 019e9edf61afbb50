"""The one exception type for mistakes a user can make (bad config, unknown GPU, impossible budget).

The CLI turns it into a single line on stderr and exit code 2; library callers can catch it as ValueError.
"""


class ArchscaleInputError(ValueError):
    """Bad user input: the message is one complete, human-readable sentence (no traceback needed)."""
