"""Helpers that write small corpora for the data tests."""
from __future__ import annotations

import functools
import json
from pathlib import Path


def write_code_corpus(root: Path, n_files: int = 24) -> Path:
    """Deterministic small Python files of varied length (some longer than a row)."""
    for i in range(n_files):
        pkg = root / ("pkg" if i % 2 else "lib") / f"sub{i % 3}"
        pkg.mkdir(parents=True, exist_ok=True)
        body = "".join(f"def f{i}_{j}(x):\n    return x * {i} + {j}\n\n" for j in range(1 + (i * 7) % 23))
        (pkg / f"mod{i}.py").write_text(f"# module {i}\n" + body)
    (root / "lib" / "empty.py").write_text("")  # blank files are skipped, not errors
    (root / "notes.txt").write_text("not python")  # other suffixes are ignored
    return root


def write_jsonl(path: Path, texts: list, bad_lines: list[str] = ()) -> Path:
    lines = [json.dumps({"text": t}) for t in texts] + list(bad_lines)
    path.write_text("\n".join(lines) + "\n")
    return path


@functools.lru_cache(maxsize=None)  # TFDS registers builder classes by name: define it once per process
def tiny_tfds_class():
    """A 5-document train / 2-document test TFDS text dataset (`tiny_text_for_patch_tests`, text key `body`)."""
    import tensorflow_datasets as tfds
    from patch_training.data.tfds_builders import _LocalBuilder

    class TinyTextForPatchTests(_LocalBuilder):  # registered in TFDS as tiny_text_for_patch_tests
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({"body": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(5), "test": self._generate_examples(2)}

        def _generate_examples(self, n):
            for i in range(n):
                yield i, {"body": f"tfds document {i}. " * 3}

    return TinyTextForPatchTests
