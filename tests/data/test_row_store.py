"""The ArrayRecord row store: built with Beam (in-process DirectRunner), read by random access.

Its rows equal the memmap cache's for the same config, hosts read only their slice, a rebuild resumes,
and a missing or mismatched store is one line naming the command that builds it.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

pytest.importorskip("apache_beam", reason="needs the beam extra (scripts/setup.sh --beam)")

from patch_training.data import make_dataset, row_store, store_build  # noqa: E402
from patch_training.errors import UserError  # noqa: E402

from tests.support.row_stores import BYTE, IN_PROCESS, L, ROW_SETS, build  # noqa: E402


@pytest.fixture
def corpus(session_row_store) -> str:
    return session_row_store.corpus


@pytest.fixture
def stores(session_row_store):
    return session_row_store.root


@pytest.mark.parametrize("kw", ROW_SETS, ids=["packed", "padded", "concat_k2"])
def test_store_rows_equal_the_memmap_cache_rows(stores, corpus, cache_dir, kw):
    cached = make_dataset(task=corpus, split="train", vocab=BYTE, seed=1, cache_dir=cache_dir, **kw)
    stored = make_dataset(task=corpus, split="train", vocab=BYTE, seed=1, cache_dir=cache_dir,
                          row_stores={corpus: str(stores)}, **kw)
    assert isinstance(stored._reader, row_store.ArrayRecordRows) and len(stored.meta["shards"]) > 1
    assert (stored.num_rows, stored.fingerprint, stored.num_tokens) == (cached.num_rows, cached.fingerprint,
                                                                         cached.num_tokens)
    ids = np.random.default_rng(2).permutation(cached.num_rows)
    a, b = cached.rows(ids), stored.rows(ids)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert stored.meta["row_report"]["malformed"] == 1  # the bad line is counted, as the cache counts it
    for step in range(3):  # the seeded walk is the same: same step, same batch
        np.testing.assert_array_equal(cached.host_batch(step, 4)["decoder_target_tokens"],
                                      stored.host_batch(step, 4)["decoder_target_tokens"])


def test_two_hosts_read_only_their_half_of_each_step(stores, corpus, cache_dir):
    hosts = [make_dataset(task=corpus, split="train", sequence_length=L, vocab=BYTE, seed=5, cache_dir=cache_dir,
                          row_stores={corpus: str(stores)}) for _ in range(2)]
    B = 6
    for step in range(4):
        whole = hosts[0].rows(hosts[0].global_row_ids(step, B))["decoder_target_tokens"]
        before = [h._reader.rows_read for h in hosts]
        halves = [h.host_batch(step, B, i, 2)["decoder_target_tokens"] for i, h in enumerate(hosts)]
        assert [h._reader.rows_read - n for h, n in zip(hosts, before)] == [B // 2, B // 2]
        np.testing.assert_array_equal(np.concatenate(halves), whole)


def test_a_rerun_skips_finished_units_and_shards(tmp_path, corpus):
    out = build(tmp_path, corpus, sequence_length=L, concat=True)
    meta = json.loads(open(os.path.join(out, "meta.json")).read())
    names = [s["file"] for s in meta["shards"]]
    units = sorted((tmp_path / ".tokens").rglob("unit-*.json"))
    kept = [p for p in tmp_path.rglob("rows-*.array_record") if p.name != names[-1]]
    stamps = {p: p.stat().st_mtime_ns for p in [*units, *kept]}
    # An interrupted build: the last shard and meta.json never landed.
    os.remove(os.path.join(out, names[-1]))
    os.remove(os.path.join(out, names[-1] + ".json"))
    os.remove(os.path.join(out, "meta.json"))
    build(tmp_path, corpus, sequence_length=L, concat=True)
    again = json.loads(open(os.path.join(out, "meta.json")).read())
    assert again["shards"] == meta["shards"] and again["num_rows"] == meta["num_rows"]
    redone = [p.name for p, t in stamps.items() if p.stat().st_mtime_ns != t]
    assert redone == [], redone
    assert os.path.exists(os.path.join(out, names[-1]))


def test_a_missing_store_is_one_line_with_the_build_command(stores, corpus, cache_dir):
    with pytest.raises(UserError) as e:
        make_dataset(task=corpus, split="train", sequence_length=48, vocab=BYTE, cache_dir=cache_dir,
                     row_stores={corpus: str(stores)})
    msg = str(e.value)
    assert "\n" not in msg and "not found" in msg
    assert "python -m patch_training.data.preprocess" in msg and "--sequence_length=48" in msg
    assert f"--out={stores}" in msg


def _store_copy(dest, stores, corpus, edit) -> str:
    """The packed row set copied under `dest` with its `meta.json` changed by `edit` (the session store stays
    as built); returns the copy's store root."""
    src = stores / f"{corpus}-train-packed1-L{L}"
    copy = dest / src.name
    copy.mkdir()
    for f in src.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    meta = json.loads((copy / "meta.json").read_text())
    edit(meta)
    (copy / "meta.json").write_text(json.dumps(meta))
    return str(dest)


def _count_hashing(monkeypatch) -> list:
    from patch_training.data import corpora
    calls, real = [], corpora.fingerprint_files
    monkeypatch.setattr(corpora, "fingerprint_files", lambda *a: calls.append(a) or real(*a))
    return calls


def test_opening_a_store_over_unchanged_files_reads_none_of_their_bytes(stores, corpus, cache_dir, monkeypatch):
    from patch_training.data import corpora
    meta = row_store.read_meta(str(stores / f"{corpus}-train-packed1-L{L}"))
    assert meta["content_stat"]  # the build recorded the corpus files' names, sizes and mtimes

    def hashed(*a, **k):
        raise AssertionError("opening the store hashed the corpus files")
    monkeypatch.setattr(corpora, "fingerprint_files", hashed)
    monkeypatch.setattr(hashlib, "file_digest", hashed)
    ds = make_dataset(task=corpus, split="train", sequence_length=L, vocab=BYTE, cache_dir=cache_dir,
                      row_stores={corpus: str(stores)})
    assert ds.num_rows == meta["num_rows"] and ds.fingerprint == meta["fingerprint"]


@pytest.mark.parametrize("edit", [lambda m: m.update(content_stat="0" * 20), lambda m: m.pop("content_stat")],
                         ids=["files_touched_since_the_build", "store_without_a_stat_record"])
def test_files_with_other_stats_but_the_same_bytes_are_hashed_and_still_open(tmp_path, stores, corpus,
                                                                              cache_dir, monkeypatch, edit):
    # The files' stat no longer equals the store's record (a `touch`, a copy without mtimes, an older store):
    # the open hashes them as the memmap cache does, and the bytes are the ones the store was built from.
    root = _store_copy(tmp_path, stores, corpus, edit)
    calls = _count_hashing(monkeypatch)
    ds = make_dataset(task=corpus, split="train", sequence_length=L, vocab=BYTE, cache_dir=cache_dir,
                      row_stores={corpus: root})
    assert len(calls) == 1 and ds.num_rows > 0


def test_an_edited_corpus_is_one_line_naming_the_rebuild(tmp_path, stores, corpus, cache_dir, monkeypatch):
    # As the store sees a corpus edited since its build: the files' stat and content both differ from its record.
    root = _store_copy(tmp_path, stores, corpus, lambda m: (m.update(content_stat="0" * 20),
                                                            m["key"].update(content="0" * 20)))
    calls = _count_hashing(monkeypatch)
    with pytest.raises(UserError) as e:
        make_dataset(task=corpus, split="train", sequence_length=L, vocab=BYTE, cache_dir=cache_dir,
                     row_stores={corpus: root})
    msg = str(e.value)
    assert len(calls) == 1 and "\n" not in msg and "differs in: content" in msg
    assert "rebuild it with: python -m patch_training.data.preprocess" in msg and f"--out={root}" in msg


def test_read_ahead_serves_exactly_the_direct_batches_also_after_a_resume(stores, corpus, cache_dir):
    from patch_training.data.prefetch import PrefetchingBatches, with_prefetch
    ds = make_dataset(task=corpus, split="train", sequence_length=L, vocab=BYTE, seed=7, cache_dir=cache_dir,
                      row_stores={corpus: str(stores)})
    direct = [ds.host_batch(s, 4, 1, 2)["decoder_target_tokens"] for s in range(8)]
    ahead = with_prefetch(ds)
    assert isinstance(ahead, PrefetchingBatches) and ahead.num_rows == ds.num_rows
    for s in range(5):
        np.testing.assert_array_equal(ahead.host_batch(s, 4, 1, 2)["decoder_target_tokens"], direct[s])
    ahead.close()
    resumed = with_prefetch(ds)  # a restarted process begins at its checkpoint's step
    for s in (3, 4, 5, 7):   # ... and a jump is served too, not a stale read-ahead
        np.testing.assert_array_equal(resumed.host_batch(s, 4, 1, 2)["decoder_target_tokens"], direct[s])
    resumed.close()


def test_a_tfds_dataset_in_even_sub_splits_gives_the_cache_rows(tmp_path, cache_dir):
    from patch_training.data import register_tfds_corpus
    from tests.support.corpora import tiny_tfds_class as _tiny_tfds_class

    _tiny_tfds_class()(data_dir=str(tmp_path / "tfds")).download_and_prepare()
    name = register_tfds_corpus(name="store_tfds", tfds_name="tiny_text_for_patch_tests", text_key="body",
                                split_map={"train": "train", "validation": "test"}, tfds_data_dir=str(tmp_path / "tfds"))
    store_build.build_store(root=str(tmp_path / "store"), task=name, split="train", vocab=BYTE, sequence_length=16,
                            patch_size=2, tfds_units=3, rows_per_shard=2, pipeline_args=IN_PROCESS, workers=1)
    kw = dict(task=name, split="train", sequence_length=16, patch_size=2, vocab=BYTE, cache_dir=cache_dir)
    cached, stored = make_dataset(**kw), make_dataset(**kw, row_stores={name: str(tmp_path / "store")})
    assert stored.num_rows == cached.num_rows and stored.meta["num_documents"] == 5
    ids = np.arange(cached.num_rows)
    np.testing.assert_array_equal(cached.rows(ids)["decoder_target_tokens"], stored.rows(ids)["decoder_target_tokens"])
