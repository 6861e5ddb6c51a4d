"""Raw corpus reading: deterministic split, bad directories, malformed JSONL rows (no TensorFlow)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from patch_training.data import corpora
from patch_training.errors import UserError

from tests.support.corpora import write_jsonl


def _fake_files(root: Path, n: int) -> list[Path]:
    return [root / f"d{i % 7}" / f"f{i}.py" for i in range(n)]


def test_split_is_deterministic_stable_and_near_fraction(tmp_path):
    files = _fake_files(tmp_path, 4000)
    a = corpora.split_files(tmp_path, files, 0.02)
    b = corpora.split_files(tmp_path, list(reversed(files)), 0.02)
    assert a["validation"] == b["validation"] and sorted(a["train"]) == sorted(b["train"])
    assert set(a["train"]).isdisjoint(a["validation"])
    assert len(a["train"]) + len(a["validation"]) == 4000
    assert 40 <= len(a["validation"]) <= 130  # ~2% of 4000 = 80
    # Removing other files never moves a file between splits (the hash is per relative path).
    c = corpora.split_files(tmp_path, files[:2000], 0.02)
    assert set(c["validation"]) == {f for f in a["validation"] if f in set(files[:2000])}
    # The same relative layout under another root splits identically.
    other = Path("/elsewhere")
    d = corpora.split_files(other, _fake_files(other, 4000), 0.02)
    assert [f.relative_to(other) for f in d["validation"]] == [f.relative_to(tmp_path) for f in a["validation"]]


def test_tiny_corpus_still_has_both_splits(tmp_path):
    s = corpora.split_files(tmp_path, _fake_files(tmp_path, 3), 0.02)
    assert len(s["validation"]) == 1 and len(s["train"]) == 2
    with pytest.raises(UserError, match="at least 2 files"):
        corpora.split_files(tmp_path, _fake_files(tmp_path, 1), 0.02)


def test_bad_corpus_directories_are_one_line(tmp_path):
    with pytest.raises(UserError, match="corpus directory not found"):
        corpora.list_corpus_files(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no python here")
    with pytest.raises(UserError, match="has no .py files"):
        corpora.list_corpus_files(tmp_path / "empty")
    (tmp_path / "a_file.py").write_text("x = 1")
    with pytest.raises(UserError, match="not a directory"):
        corpora.list_corpus_files(tmp_path / "a_file.py")
    if os.geteuid() != 0:  # root reads everything, so unreadability cannot be staged
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0)
        try:
            with pytest.raises(UserError, match="not readable"):
                corpora.list_corpus_files(locked)
        finally:
            locked.chmod(0o755)


def test_listing_skips_caches_and_site_packages(tmp_path):
    for d in ["a", "a/__pycache__", "site-packages/x", ".hidden"]:
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "m.py").write_text("x = 1\n")
    assert corpora.list_corpus_files(tmp_path) == [tmp_path / "a" / "m.py"]


def test_malformed_jsonl_rows_are_counted_not_dropped_silently(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", ["first doc", "second", ""],
                       bad_lines=['{"text": 3}', "{not json", '{"title": "no text"}', "[1, 2]"])
    report = corpora.RowReport()
    texts = list(corpora.iter_jsonl_texts(path, report))
    assert texts == ["first doc", "second"]
    assert (report.total, report.malformed, report.empty) == (7, 4, 1)
    assert report.examples[0].startswith(f"{path}:4: ")
    line = report.summary("corpus x")
    assert "skipped 4 malformed of 7 rows" in line and "\n" not in line
    with pytest.raises(UserError, match="JSONL file not found"):
        corpora.check_jsonl_files([tmp_path / "missing.jsonl"], "corpus 'x'")


def test_non_utf8_code_file_is_reported(tmp_path):
    (tmp_path / "good.py").write_text("x = 1\n")
    (tmp_path / "bad.py").write_bytes(b"x = '\xff\xfe'\n")
    report = corpora.RowReport()
    docs = list(corpora.iter_code_documents(tmp_path, corpora.list_corpus_files(tmp_path), report))
    assert [d[0] for d in docs] == ["good.py"]
    assert report.malformed == 1 and "not UTF-8" in report.examples[0]


def test_default_code_root_is_the_stdlib():
    root = corpora.default_code_root()
    assert (root / "os.py").is_file()


def test_corpus_fingerprint_streams_files_and_keeps_its_value(tmp_path, monkeypatch):
    """The cache/store key hashes each file in chunks (a shard can be larger than memory), and the value is
    the one the whole-file hash gave, so existing caches and stores still match."""
    import hashlib
    files = [tmp_path / "a.jsonl", tmp_path / "sub" / "b.jsonl"]
    files[1].parent.mkdir()
    files[0].write_bytes(b'{"text": "x"}\n' * 50_000)
    files[1].write_bytes(b"")
    expected = hashlib.sha256(repr((0.5,)).encode())
    for f in files:
        expected.update(str(f.relative_to(tmp_path)).encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())

    def whole_file_read(self):
        raise AssertionError(f"{self} read whole into memory")
    monkeypatch.setattr(Path, "read_bytes", whole_file_read)
    assert corpora.fingerprint_files(tmp_path, files, 0.5) == expected.hexdigest()[:20]


def test_stat_record_follows_names_sizes_and_mtimes_without_reading_a_byte(tmp_path, monkeypatch):
    """A row store's freshness check at open: a touched or edited file changes the record, and taking it opens
    no file (a training host must not read its whole corpus to open a store)."""
    files = [tmp_path / "a.py", tmp_path / "b.py"]
    files[0].write_text("x = 1\n")
    files[1].write_text("y = 2\n")
    content = corpora.fingerprint_files(tmp_path, files)

    def stat(root, fs):
        with monkeypatch.context() as m:
            m.setattr("builtins.open", lambda *a, **k: pytest.fail(f"opened {a[0]}"))
            return corpora.stat_files(root, fs)
    before = stat(tmp_path, files)
    assert stat(tmp_path, files) == before and stat(tmp_path, files[:1]) != before
    st = files[0].stat()
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes, other mtime
    touched = stat(tmp_path, files)
    assert touched != before and corpora.fingerprint_files(tmp_path, files) == content
    files[0].write_text("x = 12\n")  # edited: another size
    assert stat(tmp_path, files) not in (before, touched) and corpora.fingerprint_files(tmp_path, files) != content
