"""The command line every gin-configured entry point shares: `--gin_file`, `--gin_search_path` and
`--gin.NAME=VALUE` bindings (T5X style), parsed into argparse args plus a list of gin bindings."""
from __future__ import annotations

import argparse
from typing import Callable, Sequence

from patch_training.errors import UserError


def add_gin_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gin_file", action="append", default=[],
                        help="gin file to parse (repeatable); later files override earlier ones")
    parser.add_argument("--gin_search_path", action="append", default=[],
                        help="extra directory to search for gin files and their includes")


def split_gin_bindings(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate `--gin.NAME=VALUE` (or `--gin.NAME VALUE`) flags, as gin bindings, from the rest of argv."""
    bindings, rest = [], []
    it = iter(argv)
    for arg in it:
        if arg.startswith("--gin."):
            body = arg[len("--gin."):]
            if "=" not in body:
                try:
                    body = f"{body}={next(it)}"
                except StopIteration:
                    raise UserError(f"flag {arg}: expected --gin.NAME=VALUE") from None
            name, value = body.split("=", 1)
            bindings.append(f"{name} = {value}")
        else:
            rest.append(arg)
    return bindings, rest


def parse_gin_command_line(argv: Sequence[str], *, prog: str, doc: str | None, example_gin_file: str,
                           add_flags: Callable[[argparse.ArgumentParser], None] | None = None
                           ) -> tuple[argparse.Namespace, list[str]]:
    """(args, gin bindings) of a gin-configured command; at least one `--gin_file` is required.

    `add_flags` adds the command's own flags (runtime flags, `--stage`, ...) after the gin ones.
    """
    bindings, rest = split_gin_bindings(argv)
    parser = argparse.ArgumentParser(prog=prog, description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_gin_flags(parser)
    if add_flags is not None:
        add_flags(parser)
    args = parser.parse_args(list(rest))
    if not args.gin_file:
        raise UserError(f"no --gin_file given (e.g. --gin_file={example_gin_file})")
    return args, bindings
