"""Reading raw corpora: code directories and `{"text": ...}` JSONL files.

Everything here is plain Python (no TensorFlow), so listing, hashing and splitting a corpus is
cheap. Bad input becomes one `UserError` line; a malformed row is counted in a `RowReport`
(and reported), never silently dropped.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sysconfig
from pathlib import Path
from typing import Iterator, Sequence

from patch_training.errors import UserError

log = logging.getLogger(__name__)

# Directories never worth reading as corpus text (bytecode caches, VCS, third-party installs).
SKIP_DIRS = frozenset({"__pycache__", "site-packages", "dist-packages", ".git", ".hg", ".svn",
                       ".tox", ".venv", "node_modules"})


def default_code_root() -> Path:
    """The running interpreter's standard library: real Python code on every machine."""
    return Path(sysconfig.get_paths()["stdlib"])


@dataclasses.dataclass
class RowReport:
    """Counts rows that could not be used, with the first few locations, for one clear report."""
    total: int = 0
    malformed: int = 0
    empty: int = 0  # blank documents (e.g. empty __init__.py): nothing to learn, not an error
    examples: list[str] = dataclasses.field(default_factory=list)

    def bad(self, where: str, why: str) -> None:
        self.malformed += 1
        if len(self.examples) < 5:
            self.examples.append(f"{where}: {why}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RowReport":
        return cls(int(d.get("total", 0)), int(d.get("malformed", 0)), int(d.get("empty", 0)),
                   list(d.get("examples", [])))

    def summary(self, what: str) -> str | None:
        if not self.malformed:
            return None
        return (f"{what}: skipped {self.malformed} malformed of {self.total} rows "
                f"(first: {self.examples[0] if self.examples else '?'})")

    def log(self, what: str) -> None:
        line = self.summary(what)
        if line:
            log.warning(line)


def list_corpus_files(root: str | os.PathLike, extensions: Sequence[str] = (".py",)) -> list[Path]:
    """Sorted files under `root` with one of `extensions`; UserError if missing, unreadable or empty."""
    root = Path(root)
    if not root.exists():
        raise UserError(f"corpus directory not found: {root}")
    if not root.is_dir():
        raise UserError(f"corpus path is not a directory: {root}")
    if not os.access(root, os.R_OK | os.X_OK):
        raise UserError(f"corpus directory is not readable: {root}")

    def on_error(e: OSError) -> None:
        raise UserError(f"corpus directory {root}: cannot read {e.filename}: {e.strerror}")

    files = []
    for d, dirs, names in os.walk(root, onerror=on_error):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and not x.startswith("."))
        files.extend(Path(d) / n for n in names if n.endswith(tuple(extensions)))
    if not files:
        raise UserError(f"corpus directory {root} has no {'/'.join(extensions)} files")
    return sorted(files)


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot read corpus file {path}: {e.strerror}") from None


def validation_bucket(relative_path: str) -> float:
    """A stable number in [0, 1) from a file's path relative to the corpus root."""
    digest = hashlib.sha256(relative_path.replace(os.sep, "/").encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def split_files(root: Path, files: Sequence[Path], validation_fraction: float) -> dict[str, list[Path]]:
    """Deterministic train/validation split by a hash of each relative path.

    Adding or removing other files never moves a file between splits. Tiny corpora still get
    one validation file (the one with the smallest hash), so both splits are non-empty.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise UserError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    if len(files) < 2:
        raise UserError(f"corpus {root} needs at least 2 files to split train/validation, has {len(files)}")
    buckets = {f: validation_bucket(str(f.relative_to(root))) for f in files}
    val = [f for f in files if buckets[f] < validation_fraction]
    if not val:
        val = [min(files, key=buckets.__getitem__)]
    if len(val) == len(files):
        val.remove(max(val, key=buckets.__getitem__))
    val_set = set(val)
    return {"train": [f for f in files if f not in val_set], "validation": sorted(val_set)}


def _key_name(root: Path, f: Path) -> str:
    """A file's name in a corpus key: relative to the corpus root, else its base name."""
    return str(f.relative_to(root) if f.is_relative_to(root) else f.name)


def fingerprint_files(root: Path, files: Sequence[Path], *extra: object) -> str:
    """Content hash of a file set (relative names + bytes) plus options: the cache key of a corpus."""
    h = hashlib.sha256(repr(extra).encode())
    for f in files:
        h.update(_key_name(root, f).encode() + b"\0")
        try:
            with open(f, "rb") as fh:  # streamed: a corpus shard may be larger than this host's memory
                h.update(hashlib.file_digest(fh, "sha256").digest())
        except OSError as e:
            raise UserError(f"cannot read corpus file {f}: {e.strerror}") from None
    return h.hexdigest()[:20]


def stat_files(root: Path, files: Sequence[Path]) -> str:
    """Hash of a local file set's names (as `fingerprint_files` names them), sizes and modification times
    (ns), read from the directory entries, not the bytes. A row store records it at build time so that a
    training host can tell its corpus is as it was without reading all of it (make's and rsync's test; like
    theirs, it misses an edit that keeps both the size and the mtime)."""
    h = hashlib.sha256(b"stat")
    for f in files:
        try:
            st = os.stat(f)
        except OSError as e:
            raise UserError(f"cannot stat corpus file {f}: {e.strerror}") from None
        h.update(f"{_key_name(root, f)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.hexdigest()[:20]


def iter_code_documents(root: Path, files: Sequence[Path], report: RowReport) -> Iterator[tuple[str, str]]:
    """(relative path, text) per file; files that are not UTF-8 are counted as malformed."""
    for f in files:
        rel = str(f.relative_to(root)).replace(os.sep, "/")
        report.total += 1
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            report.bad(str(f), f"not UTF-8 ({e.reason} at byte {e.start})")
            continue
        except OSError as e:
            raise UserError(f"cannot read corpus file {f}: {e.strerror}") from None
        if text.strip():
            yield rel, text
        else:
            report.empty += 1


def check_jsonl_files(files: Sequence[str | os.PathLike], what: str) -> list[Path]:
    paths = [Path(os.path.expanduser(str(f))) for f in files]
    if not paths:
        raise UserError(f"{what}: no JSONL files given")
    for p in paths:
        if not p.is_file():
            raise UserError(f"{what}: JSONL file not found: {p}")
        if not os.access(p, os.R_OK):
            raise UserError(f"{what}: JSONL file is not readable: {p}")
    return paths


def iter_jsonl_texts(path: Path, report: RowReport, text_key: str = "text") -> Iterator[str]:
    """The `text_key` string of each line; bad JSON, a missing key or a non-string is counted."""
    for key, text in iter_jsonl_rows(path, report, text_key):
        yield text


def is_url(path: str | os.PathLike) -> bool:
    """A file behind a scheme (gs://, s3://, ...): read through tf.io.gfile, not the local filesystem."""
    return "://" in str(path)


def open_binary(path: str | os.PathLike):
    """A binary file object for a local path or a URL (tf.io.gfile, imported only for URLs)."""
    if is_url(path):
        from patch_training.tf_quiet import ensure_tensorflow_imported
        ensure_tensorflow_imported()
        import tensorflow as tf
        try:
            return tf.io.gfile.GFile(str(path), "rb")
        except Exception as e:  # gfile raises its own NotFoundError/PermissionDeniedError types
            raise UserError(f"cannot open {path}: {str(e).splitlines()[0][:200]}") from None
    try:
        return open(path, "rb")
    except OSError as e:
        raise UserError(f"cannot open corpus file {path}: {e.strerror}") from None


def fingerprint_remote_files(paths: Sequence[str]) -> str:
    """Name, size and modification time of files behind URLs: hashing their bytes would read the whole
    corpus on every host, and object stores change an object's mtime whenever its bytes change."""
    from patch_training.tf_quiet import ensure_tensorflow_imported
    ensure_tensorflow_imported()
    import tensorflow as tf
    h = hashlib.sha256(b"remote")
    for p in paths:
        try:
            st = tf.io.gfile.stat(str(p))
        except Exception as e:
            raise UserError(f"corpus file {p}: {str(e).splitlines()[0][:200]}") from None
        h.update(f"{p}\0{st.length}\0{st.mtime_nsec}\0".encode())
    return h.hexdigest()[:20]


def expand_urls(names: Sequence[str]) -> list[str]:
    """Text shards named by URL may be glob patterns (gs://b/pile/train/*.jsonl.zst): each expands to its
    matches in sorted order, which is then the corpus order."""
    out = []
    for name in names:
        if is_url(name) and any(c in str(name) for c in "*?["):
            from patch_training.tf_quiet import ensure_tensorflow_imported
            ensure_tensorflow_imported()
            import tensorflow as tf
            matches = sorted(tf.io.gfile.glob(str(name)))
            if not matches:
                raise UserError(f"no corpus files match {name}")
            out.extend(matches)
        else:
            out.append(str(name))
    return out


TEXT_SHARD_SUFFIXES = (".jsonl", ".json", ".jsonl.zst", ".json.zst", ".parquet")


def iter_text_rows(path: str | os.PathLike, report: RowReport, text_key: str = "text") -> Iterator[tuple[str, str]]:
    """(where, text) of a text shard by its suffix: JSONL, zstd-compressed JSONL (`.zst`) or Parquet
    (the `text_key` column). The one reader of text shards: the memmap cache and the Beam store build
    both read through it, so their documents agree."""
    name = str(path)
    if name.endswith(".parquet"):
        yield from _iter_parquet_rows(path, report, text_key)
    else:
        yield from iter_jsonl_rows(path, report, text_key)


def _iter_parquet_rows(path, report: RowReport, text_key: str) -> Iterator[tuple[str, str]]:
    import pyarrow.parquet as pq
    with open_binary(path) as f:
        try:
            pf = pq.ParquetFile(f)
        except Exception as e:
            raise UserError(f"cannot read Parquet file {path}: {str(e)[:200]}") from None
        if text_key not in pf.schema_arrow.names:
            raise UserError(f"Parquet file {path} has no column {text_key!r} (columns: {', '.join(pf.schema_arrow.names)})")
        row = 0
        for batch in pf.iter_batches(columns=[text_key], batch_size=4096):
            for text in batch.column(0).to_pylist():
                row += 1
                report.total += 1
                where = f"{Path(str(path)).name}:{row}"
                if not isinstance(text, str):
                    report.bad(where, f"{text_key!r} is {type(text).__name__}, not a string")
                elif not text.strip():
                    report.empty += 1
                else:
                    yield where, text


def _lines(path):
    """Raw lines of a JSONL file, decompressing `.zst` as a stream (never the whole file in memory)."""
    f = open_binary(path)
    if str(path).endswith(".zst"):
        import io
        try:
            import zstandard
        except ImportError:
            f.close()
            raise UserError(f"{path}: reading .zst needs the zstandard package (scripts/setup.sh --beam)") from None
        stream = zstandard.ZstdDecompressor().stream_reader(f, closefd=True)
        return io.BufferedReader(stream)
    return f


def iter_jsonl_objects(path: Path, report: RowReport) -> Iterator[tuple[str, int, dict]]:
    """(where, line number, object) for each JSON-object line; blank lines are skipped, bad JSON and
    non-objects are counted in `report`. An unreadable file is one line."""
    f = _lines(path)
    with f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue  # blank lines separate nothing and are not rows
            report.total += 1
            where = f"{path}:{lineno}"
            try:
                row = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as e:
                report.bad(where, f"invalid JSON ({str(e)[:80]})")
                continue
            if not isinstance(row, dict):
                report.bad(where, "not a JSON object")
                continue
            yield where, lineno, row


def iter_jsonl_rows(path: Path, report: RowReport, text_key: str = "text") -> Iterator[tuple[str, str]]:
    for where, lineno, row in iter_jsonl_objects(path, report):
        if text_key not in row:
            report.bad(where, f"no {text_key!r} field")
            continue
        text = row[text_key]
        if not isinstance(text, str):
            report.bad(where, f"{text_key!r} is {type(text).__name__}, not a string")
            continue
        if not text.strip():
            report.empty += 1
            continue
        yield f"{Path(str(path)).name}:{lineno}", text
