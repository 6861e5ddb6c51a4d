"""User-facing errors: one clear line that says what went wrong and where.

Expected mistakes (bad config, missing file, malformed row, corrupt checkpoint, bad mesh) raise
`UserError`. Entry points wrap `main` with `run_cli`, which prints the one line and exits with
status 2 instead of dumping a traceback. Unexpected errors still get their full traceback.
"""
from __future__ import annotations

import os
import sys
from typing import Callable


class UserError(Exception):
    """A mistake the user can fix; its message is the whole report."""


def squash(e: BaseException, limit: int = 200) -> str:
    """A third-party exception's text on one line, cut to `limit` characters (orbax, gin and
    SentencePiece raise multi-line messages)."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def one_line(e: BaseException) -> str:
    """The first line of a user error's message.

    gin re-raises an error from inside a configurable with a second line ("In call to configurable
    ..."); the report must stay one line, and the original error (kept as the context) says what.
    """
    original = e.__context__ if isinstance(e.__context__, UserError) else e
    lines = str(original).strip().splitlines() or [type(original).__name__]
    return lines[0]


def run_cli(main: Callable[..., object], *args, prog: str | None = None) -> None:
    """Run `main(*args)`; turn a `UserError` into one line on stderr and exit status 2."""
    prog = prog or os.path.basename(sys.argv[0])
    try:
        result = main(*args)
    except UserError as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    if isinstance(result, int):
        sys.exit(result)
