"""Gin plumbing shared by every entry point (T5X style).

- `--gin_file` (repeatable) and `--gin.NAME=VALUE` flags; gin files are looked up relative to the
  working directory, then the repository root, then `configs/`.
- A misconfiguration (unknown binding, missing `%gin.REQUIRED` macro, unparsable value, missing
  file) becomes a `UserError` with one line naming the file or binding.
- `write_operative_config` stores what was actually used in the run directory.
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Sequence

import gin

from patch_training.atomic import write_text_atomic
from patch_training.errors import UserError, squash
from patch_training.legacy_names import renamed_binding_hint


def _harden_gin_file_readers() -> None:
    """Make gin's file-existence checks answer False instead of crashing.

    gin also looks for an include such as 'runs/x.gin' as package data of a Python package named
    `runs`; when a plain `runs/` directory (a namespace package, with no origin) sits in the
    working directory, that check raises TypeError and the whole parse fails. A failed check
    only means "not here", so the next search-path entry is tried.
    """
    from gin import config as gin_config
    readers = getattr(gin_config, "_FILE_READERS", None)
    if not isinstance(readers, list):
        return
    for i, (reader, exists) in enumerate(readers):
        if getattr(exists, "_patchtrain_safe", False):
            continue

        def safe_exists(path, _exists=exists):
            try:
                return bool(_exists(path))
            except Exception:  # noqa: BLE001 - any failure means the file is not found this way
                return False

        safe_exists._patchtrain_safe = True
        readers[i] = (reader, safe_exists)


_harden_gin_file_readers()

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_ROOT = REPO_ROOT / "configs"


def _resolve_gin_file(name: str, search_path: Sequence[str]) -> str:
    candidates = [Path(name)]
    for root in [*search_path, str(REPO_ROOT), str(CONFIG_ROOT)]:
        candidates.append(Path(root) / name)
    for c in candidates:
        if c.is_file():
            return str(c)
    raise UserError(f"gin file not found: {name} (looked in ., {REPO_ROOT}, {CONFIG_ROOT})")


def _one_line(e: BaseException) -> str:
    # gin appends "In file X, line N" context: keep it, it says where.
    return squash(e, 400)


def _with_rename_hint(message: str, error: BaseException) -> str:
    """gin's unknown-parameter error, plus the new binding's name when the old one was renamed."""
    hint = renamed_binding_hint(str(error))
    return f"{hint}. {message}" if hint else message


def parse_gin(gin_files: Sequence[str], bindings: Sequence[str] = (),
              search_path: Sequence[str] = (), finalize: bool = True) -> None:
    """Parse gin files and bindings; raise UserError (one line) on any misconfiguration."""
    gin.clear_config()
    _FLAG_MACROS.clear()
    _FLAG_BINDINGS.clear()
    for b in bindings:
        _record_flag(b)
    for p in [*search_path, str(REPO_ROOT), str(CONFIG_ROOT)]:
        gin.add_config_file_search_path(p)
    files = [_resolve_gin_file(f, search_path) for f in gin_files]
    for f in files:
        try:
            gin.parse_config_file(f, skip_unknown=False)
        except Exception as e:  # gin raises ValueError/KeyError/IOError/ParserError variants.
            raise UserError(_with_rename_hint(f"gin file {f}: {_one_line(e)}", e)) from None
    for b in bindings:
        try:
            gin.parse_config(b, skip_unknown=False)
        except Exception as e:
            raise UserError(_with_rename_hint(f"gin binding '--gin.{b.replace(' = ', '=', 1)}': {_one_line(e)}",
                                              e)) from None
    if finalize:
        try:
            gin.finalize()
        except Exception as e:
            raise UserError(_explain_finalize_error(e, files)) from None


def _explain_finalize_error(e: BaseException, files: Sequence[str]) -> str:
    msg = _one_line(e)
    m = re.search(r"^(\S+?)(/macro\.value)? set to `%gin\.REQUIRED`", msg)
    if m:
        name, kind = m.group(1), "macro" if m.group(2) else "binding"
        return (f"missing required gin {kind} {name} (declared %gin.REQUIRED by the run config); "
                f"set it with --gin.{name}=VALUE")
    return f"gin config ({', '.join(files)}): {msg}"


class _QuietIncludeSearch(logging.Filter):
    """gin logs an ERROR for every search-path miss while resolving `include`; only real misses matter."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("Path not found:")


logging.getLogger().addFilter(_QuietIncludeSearch())


def call_configured(fn, **kwargs):
    """Call a gin-configurable function, turning a missing REQUIRED value into one line."""
    try:
        return fn(**kwargs)
    except Exception as e:
        msg = str(e)
        if "gin.REQUIRED" in msg or "Required bindings" in msg or re.search(r"REQUIRED", msg):
            raise UserError(f"missing required gin binding: {_one_line(e)}") from None
        raise


def write_operative_config(run_dir: str | os.PathLike, name: str = "config.gin") -> Path:
    """Write gin's operative config (what was actually used) into the run directory."""
    return write_text_atomic(Path(run_dir) / name, gin.operative_config_str())


# What `--gin.NAME=VALUE` flags bound in the last `parse_gin` (see `unused_bindings`): macro names
# and (scope, selector as typed, parameter) triples.
_FLAG_MACROS: set[str] = set()
_FLAG_BINDINGS: set[tuple[str, str, str]] = set()


def _record_flag(binding: str) -> None:
    name = binding.split("=", 1)[0].strip()
    scope, _, name = name.rpartition("/")
    selector, dot, param = name.rpartition(".")
    if not dot:
        _FLAG_MACROS.add(name)
    else:
        _FLAG_BINDINGS.add((scope, selector, param))


def _from_flags(scope: str, selector: str, param: str) -> bool:
    return any(scope == s and param == p and (selector == sel or selector.endswith("." + sel))
               for s, sel, p in _FLAG_BINDINGS)


def unused_bindings() -> tuple[list[str], list[str]]:
    """Bindings parsed into the config that no configured call has read (so far).

    gin records every parameter a configurable actually received in its operative config; a parsed
    binding missing from it went to a function this run never called (`trainer.TrainerConfig.*` in
    a two-stage run before issue 8, a macro the run's files never reference, a misspelt scope).
    Returns (set by command-line flags, set by gin files). File bindings can be dead on purpose: an
    experiment that replaces `@train/factory.make_dataset()` with its own data leaves the run
    file's `train/factory.make_dataset.*` unread; a macro whose only reference a later binding
    overrode (EVAL_BATCHES once `TrainerConfig.eval_batches` is set directly) is unread too.
    """
    from gin import config as gin_config
    parsed = getattr(gin_config, "_CONFIG", {})
    used = getattr(gin_config, "_OPERATIVE_CONFIG", {})
    by_flag, by_file = [], []
    for (scope, selector), params in parsed.items():
        got = used.get((scope, selector), {})
        for param in params:
            if param in got:
                continue
            if selector == "gin.macro":  # stored as (name, 'gin.macro') -> {'value': ...}
                (by_flag if scope in _FLAG_MACROS else by_file).append(scope)
            else:
                name = f"{scope + '/' if scope else ''}{selector}.{param}"
                (by_flag if _from_flags(scope, selector, param) else by_file).append(name)
    return sorted(by_flag), sorted(by_file)


def check_all_bindings_used() -> None:
    """Refuse a `--gin.` flag that nothing in this run reads; log dead file bindings.

    Call it once every configured object of the run is built (before training starts).
    """
    if not gin.config_is_locked():  # only runs parsed through `parse_gin` (finalized) are checked
        return
    by_flag, by_file = unused_bindings()
    if by_file:
        logging.getLogger(__name__).info("gin bindings from files that this run does not read: %s",
                                         ", ".join(by_file))
    if by_flag:
        raise UserError(f"gin bindings that this run never reads: {', '.join(by_flag)} (a setting this kind "
                        "of run does not use, or a misspelt name/scope); remove them or bind the name the "
                        "run reads")
