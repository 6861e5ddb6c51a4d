"""Small corpora in tmp dirs for the data tests (ByteVocabulary; builds are kept few and tiny)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.corpora import write_code_corpus

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def code_root(tmp_path_factory) -> Path:
    return write_code_corpus(tmp_path_factory.mktemp("code_corpus"))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data_cache")


@pytest.fixture(scope="session")
def code_task(code_root) -> str:
    from patch_training.data import register_code_corpus
    return register_code_corpus(name="test_code", root=str(code_root), validation_fraction=0.2)
