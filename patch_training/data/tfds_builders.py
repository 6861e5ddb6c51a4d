"""TFDS builders for local corpora: a directory of `.py` files and `{"text": ...}` JSONL files.

Each corpus gets a builder config named by a content hash of its files and options, so editing a
file or changing the split yields a new prepared dataset instead of silently reusing a stale one.
Prepared data lives under the run's cache dir (`<cache_dir>/tfds`), never in the home directory.
Rows that cannot be used are counted while generating and saved next to the prepared data as
`row_report.json`, so every later load can report them again.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

from patch_training.tf_quiet import ensure_tensorflow_imported

ensure_tensorflow_imported()
import tensorflow_datasets as tfds

from patch_training.atomic import write_json_atomic
from patch_training.data import corpora
from patch_training.errors import UserError

REPORT_FILE = "row_report.json"


def _text_features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({"text": tfds.features.Text(), "id": tfds.features.Text()})


class _LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Base for builders of local files: nothing to download, no checksums file.

    Documents keep their file-and-line order (TFDS would otherwise reorder them by a hash of each key):
    that order is what the row store's parallel build reproduces, shard by shard, so a store and this
    cache hold the same rows (1.1.0; 1.0.0 datasets were hash-ordered).
    """


    # TFDS's default `code_path` probes `importlib_resources`, a package this environment does
    # not ship; the builder's own module file is what it would find anyway.
    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls):
        import inspect
        from etils import epath
        return epath.Path(inspect.getfile(cls))

    # Both local corpora: a {"text", "id"} example per document, one row report per split, and
    # splits named by the builder config's `files` mapping.
    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(features=_text_features(), disable_shuffling=True)

    def _split_generators(self, dl_manager):
        self.row_reports = {split: corpora.RowReport() for split in self.builder_config.files}
        return {split: self._generate_examples(split, files)
                for split, files in self.builder_config.files.items()}


class CodeCorpusConfig(tfds.core.BuilderConfig):
    def __init__(self, *, root: Path, files: dict[str, list[Path]], fingerprint: str):
        super().__init__(name=f"h{fingerprint}", version="1.1.0",
                         description=f"Python files under {root}")
        self.root = root
        self.files = files


class PatchTrainingCodeCorpus(_LocalBuilder):
    """Python source files, one example per file, split train/validation by path hash."""
    VERSION = tfds.core.Version("1.1.0")

    def _generate_examples(self, split: str, files: Sequence[Path]):
        for rel, text in corpora.iter_code_documents(self.builder_config.root, files,
                                                     self.row_reports[split]):
            yield rel, {"text": text, "id": rel}


class JsonlCorpusConfig(tfds.core.BuilderConfig):
    def __init__(self, *, files: Mapping[str, list[Path]], text_key: str, fingerprint: str):
        super().__init__(name=f"h{fingerprint}", version="1.1.0", description="JSONL text rows")
        self.files = dict(files)
        self.text_key = text_key


class PatchTrainingJsonlCorpus(_LocalBuilder):
    """One example per JSONL line; a malformed line is counted in the row report."""
    VERSION = tfds.core.Version("1.1.0")

    def _generate_examples(self, split: str, files: Sequence[Path]):
        for i, f in enumerate(files):
            for key, text in corpora.iter_text_rows(f, self.row_reports[split], self.builder_config.text_key):
                yield f"{i}:{key}", {"text": text, "id": key}


def prepare(builder: tfds.core.DatasetBuilder) -> dict[str, corpora.RowReport]:
    """download_and_prepare once (local files only) and return the saved per-split row reports."""
    report_path = Path(builder.data_dir) / REPORT_FILE
    if not report_path.is_file():
        tfds.disable_progress_bar()  # our own log line reports progress; bars clutter logs
        print(f"[data] preparing {builder.name}/{builder.builder_config.name} in {builder.data_dir}",
              file=sys.stderr, flush=True)
        try:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(try_download_gcs=False))
        except UserError:
            raise
        except AssertionError as e:  # TFDS's way of saying a split yielded nothing
            raise UserError(f"corpus for {builder.name}/{builder.builder_config.name}: {e}") from None
        reports = getattr(builder, "row_reports", {})
        payload = {split: r.to_dict() for split, r in reports.items()}
        write_json_atomic(report_path, payload, sort_keys=False)
    saved = json.loads(report_path.read_text())
    return {split: corpora.RowReport.from_dict(d) for split, d in saved.items()}


def code_corpus_builder(root: str | os.PathLike | None, *, data_dir: str | os.PathLike,
                        extensions: Sequence[str] = (".py",),
                        validation_fraction: float = 0.02) -> tfds.core.DatasetBuilder:
    root = Path(root) if root else corpora.default_code_root()
    files = corpora.list_corpus_files(root, extensions)
    splits = corpora.split_files(root, files, validation_fraction)
    fp = corpora.fingerprint_files(root, files, tuple(extensions), validation_fraction)
    config = CodeCorpusConfig(root=root, files=splits, fingerprint=fp)
    return PatchTrainingCodeCorpus(config=config, data_dir=str(data_dir))


def jsonl_corpus_builder(files: Mapping[str, Sequence[str | os.PathLike]], *, data_dir: str | os.PathLike,
                         text_key: str = "text", name: str = "jsonl") -> tfds.core.DatasetBuilder:
    paths = {split: corpora.check_jsonl_files(fs, f"corpus {name!r} split {split!r}")
             for split, fs in files.items()}
    all_paths = [p for ps in paths.values() for p in ps]
    fp = corpora.fingerprint_files(Path("/"), all_paths, text_key,
                                   tuple((s, tuple(str(p) for p in ps)) for s, ps in paths.items()))
    config = JsonlCorpusConfig(files=paths, text_key=text_key, fingerprint=fp)
    return PatchTrainingJsonlCorpus(config=config, data_dir=str(data_dir))


def named_tfds_builder(tfds_name: str, *, data_dir: str | os.PathLike | None) -> tfds.core.DatasetBuilder:
    """Any TFDS dataset by name (`name`, `name/config` or `name:version`); bad names are one line."""
    try:
        return tfds.builder(tfds_name, data_dir=None if data_dir is None else str(data_dir))
    except (tfds.core.registered.DatasetNotFoundError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"TFDS dataset {tfds_name!r} not found: {first[:200]}") from None
