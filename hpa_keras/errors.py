"""The one exception type for bad user input.

Every problem a user can fix (a malformed CSV row, a missing channel file, an
out-of-range label) raises :class:`InputError` with a message that names the
file or field and the reason. The CLI catches exactly this type and prints the
message without a traceback, so anything else reaching the user is a bug.
"""

import sys


class InputError(ValueError):
    """Bad input data or arguments: the message names the source and the reason."""


def warn(message: str) -> None:
    """Print ``warning: message`` to stderr: a result that is computed but suspect (too few
    labels behind a threshold, labels per image far from training's), said where it happens."""
    print(f"warning: {message}", file=sys.stderr, flush=True)
