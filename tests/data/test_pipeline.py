"""make_dataset end to end on a tiny corpus: packing, patch rows, determinism, host slices, cache."""
from __future__ import annotations

import time

import numpy as np
import pytest

from patch_training.data import FEATURES, make_dataset, measure_pipeline_tokens_per_s, register_jsonl_corpus
from patch_training.data import corpora
from patch_training.errors import UserError

from tests.support.corpora import tiny_tfds_class as _tiny_tfds_class, write_jsonl

BYTE = {"kind": "byte"}
L = 64


@pytest.fixture(scope="module")
def packed(code_task, cache_dir):
    return make_dataset(task=code_task, split="train", sequence_length=L, vocab=BYTE, seed=3, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def patch_rows(code_task, cache_dir):
    return make_dataset(task=code_task, split="train", sequence_length=L, vocab=BYTE, seed=3,
                        cache_dir=cache_dir, patch_size=4)


def _train_docs(code_root) -> list[bytes]:
    files = corpora.split_files(code_root, corpora.list_corpus_files(code_root), 0.2)["train"]
    return [f.read_bytes() for f in files if f.read_bytes().strip()]


def _all_rows(ds):
    return ds.rows(np.arange(ds.num_rows))


def test_packed_rows_follow_the_seqio_contract(packed, code_root):
    b = packed.host_batch(0, 8)
    assert set(b) == set(FEATURES)
    for k in FEATURES:
        assert b[k].shape == (8, L)
    assert b["decoder_loss_weights"].dtype == np.float32
    assert all(b[k].dtype == np.int32 for k in FEATURES if k != "decoder_loss_weights")

    rows = _all_rows(packed)
    t, seg, pos, inp = (rows[k] for k in ("decoder_target_tokens", "decoder_segment_ids",
                                          "decoder_positions", "decoder_input_tokens"))
    np.testing.assert_array_equal(rows["decoder_loss_weights"], (t != 0).astype(np.float32))
    np.testing.assert_array_equal(seg == 0, t == 0)  # padding is exactly segment 0
    # Positions count from 0 inside every segment; inputs are targets shifted right within it.
    starts = np.ones_like(seg, bool)
    starts[:, 1:] = seg[:, 1:] != seg[:, :-1]
    real = seg > 0
    assert (pos[starts & real] == 0).all()
    assert (pos[:, 1:][~starts[:, 1:] & real[:, 1:]] == pos[:, :-1][~starts[:, 1:] & real[:, 1:]] + 1).all()
    assert (inp[starts] == 0).all()
    np.testing.assert_array_equal(inp[:, 1:][~starts[:, 1:]], t[:, :-1][~starts[:, 1:]])
    assert seg.max() > 1  # several documents share rows (it is really packed)

    # Nothing lost: every byte of every train document plus one EOS each is in the rows.
    docs = _train_docs(code_root)
    assert packed.meta["num_documents"] == len(docs)
    assert int((t != 0).sum()) == sum(len(d) + 1 for d in docs) == packed.num_tokens
    assert int((t == 1).sum()) == len(docs)


def test_rows_match_seqio_feature_converter(packed, code_task, cache_dir):
    """Full pieces are rows as they are; the rest equals DecoderFeatureConverter(pack=True) output,
    including the decoder inputs that are re-derived on read."""
    import seqio
    import tensorflow as tf
    from patch_training.data import tasks as tasks_lib
    from patch_training.data.vocab import spec_fingerprint, vocab_from_spec

    task, _ = tasks_lib.seqio_task_for(code_task, vocab_from_spec(BYTE), spec_fingerprint(BYTE),
                                       cache_dir / "tfds")
    lengths = {"targets": L}
    pieces = task.get_dataset(lengths, split="train", shuffle=False, use_cached=False)
    full = [p["targets"] for p in pieces.as_numpy_iterator() if len(p["targets"]) == L]
    short = pieces.filter(lambda ex: tf.shape(ex["targets"])[0] < L)
    ref = next(seqio.DecoderFeatureConverter(pack=True)(short, lengths).batch(10_000).as_numpy_iterator())
    ours = _all_rows(packed)
    assert len(full) > 0 and packed.num_rows == len(full) + len(ref["decoder_target_tokens"])
    np.testing.assert_array_equal(ours["decoder_target_tokens"][: len(full)], np.stack(full))
    for k in FEATURES:
        np.testing.assert_array_equal(ours[k][len(full):], ref[k].astype(ours[k].dtype), err_msg=k)


def test_patch_rows_are_concatenated_documents_with_separators(patch_rows, code_root):
    assert patch_rows.mode == "concat" and patch_rows.patch_size == 4 and patch_rows.sequence_length == L
    rows = _all_rows(patch_rows)
    t = rows["decoder_target_tokens"]
    assert t.shape == (patch_rows.num_rows, L)
    # No segment restarts inside a row: one segment, positions 0..L-1, inputs are the raw tokens.
    np.testing.assert_array_equal(rows["decoder_segment_ids"][:-1], 1)
    np.testing.assert_array_equal(rows["decoder_positions"][0], np.arange(L))
    np.testing.assert_array_equal(rows["decoder_input_tokens"], t)
    assert (t[:-1] != 0).all()  # only the tail row may hold padding
    # Separators are kept mid-row: some EOS is followed, in the same row, by the next document.
    eos_r, eos_c = np.nonzero(t[:-1] == 1)
    assert len(eos_r) >= 10 and (t[eos_r[eos_c < L - 1], eos_c[eos_c < L - 1] + 1] != 0).any()
    # The stream splits at EOS back into exactly the train documents (bytes offset by 3).
    stream = t.reshape(-1)
    stream = stream[stream != 0]
    pieces = np.split(stream, np.flatnonzero(stream == 1) + 1)[:-1]
    decoded = sorted(bytes((p[:-1] - 3).astype(np.uint8)) for p in pieces)
    assert decoded == sorted(_train_docs(code_root))


def test_host_batch_is_a_pure_function_of_step(packed, code_task, cache_dir):
    again = make_dataset(task=code_task, split="train", sequence_length=L, vocab=BYTE, seed=3, cache_dir=cache_dir)
    for step in (0, 5, 1000):
        a, b = packed.host_batch(step, 8), again.host_batch(step, 8)
        for k in FEATURES:
            np.testing.assert_array_equal(a[k], b[k])
    other_seed = make_dataset(task=code_task, split="train", sequence_length=L, vocab=BYTE, seed=4,
                              cache_dir=cache_dir)
    assert not np.array_equal(packed.global_row_ids(0, 8), other_seed.global_row_ids(0, 8))
    assert not np.array_equal(packed.global_row_ids(0, 8), packed.global_row_ids(1, 8))


def test_epochs_visit_every_row_once(packed):
    n, bsz = packed.num_rows, 4
    steps = n // bsz
    ids = np.concatenate([packed.global_row_ids(s, bsz) for s in range(steps)])
    assert len(set(ids.tolist())) == len(ids) == steps * bsz  # no repeats inside the first epoch
    epoch1 = np.concatenate([packed.global_row_ids(s, n) for s in (1,)])
    assert sorted(epoch1.tolist()) == list(range(n))
    assert not np.array_equal(epoch1, packed.global_row_ids(0, n))  # a fresh order per epoch


@pytest.mark.parametrize("process_count", [2, 4])
def test_host_slices_partition_the_global_batch(packed, process_count):
    gbs = 8
    full = packed.host_batch(7, gbs)
    parts = [packed.host_batch(7, gbs, i, process_count) for i in range(process_count)]
    for k in FEATURES:
        assert all(p[k].shape[0] == gbs // process_count for p in parts)
        np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), full[k])
    with pytest.raises(UserError, match="not divisible by the process count"):
        packed.host_batch(0, 6, 0, 4)
    with pytest.raises(UserError, match="outside"):
        packed.host_batch(0, 8, 4, 4)


def test_eval_batches_single_pass_with_zero_weight_padding(code_task, cache_dir):
    val = make_dataset(task=code_task, split="validation", sequence_length=L, vocab=BYTE, cache_dir=cache_dir)
    assert not val.shuffle and val.num_rows > 0
    gbs = 4
    per_host = [list(val.eval_batches(gbs, i, 2)) for i in range(2)]
    assert len(per_host[0]) == len(per_host[1]) == val.num_eval_batches(gbs)
    weights = sum(float(b["decoder_loss_weights"].sum()) for h in per_host for b in h)
    assert weights == val.num_tokens  # every real token exactly once, padding rows weigh nothing
    single = list(val.eval_batches(gbs))
    merged = np.concatenate([b["decoder_target_tokens"] for b in single])
    np.testing.assert_array_equal(merged[: val.num_rows], _all_rows(val)["decoder_target_tokens"])
    assert (merged[val.num_rows:] == 0).all()
    assert all(b["decoder_target_tokens"].shape == (gbs, L) for b in single)


def test_cache_is_reused_and_content_keyed(packed, code_task, code_root, cache_dir):
    meta_file = packed.directory / "meta.json"
    mtime = meta_file.stat().st_mtime_ns
    t0 = time.perf_counter()
    again = make_dataset(task=code_task, split="train", sequence_length=L, vocab=BYTE, seed=9, cache_dir=cache_dir)
    assert time.perf_counter() - t0 < 1.0
    assert again.directory == packed.directory and meta_file.stat().st_mtime_ns == mtime
    # Another length is another cache entry.
    shorter = make_dataset(task=code_task, split="validation", sequence_length=32, vocab=BYTE, cache_dir=cache_dir)
    assert shorter.directory != packed.directory and shorter.sequence_length == 32


def test_measure_pipeline_tokens_per_s(patch_rows):
    out = measure_pipeline_tokens_per_s(patch_rows, global_batch_size=8, steps=20)
    assert out["tokens"] == 8 * L * 20 and out["pipeline_tokens_per_s"] > 0


def test_jsonl_corpus_reports_malformed_rows(tmp_path, cache_dir, caplog):
    f = write_jsonl(tmp_path / "val.jsonl", [f"document number {i} " * 5 for i in range(6)],
                    bad_lines=["{broken", '{"text": null}'])
    name = register_jsonl_corpus(name="test_jsonl", validation_files=[str(f)])
    with caplog.at_level("WARNING"):
        ds = make_dataset(task=name, split="validation", sequence_length=32, vocab=BYTE, cache_dir=cache_dir)
    assert ds.meta["row_report"]["malformed"] == 2 and ds.meta["num_documents"] == 6
    assert any("skipped 2 malformed of 8 rows" in r.getMessage() for r in caplog.records)
    with pytest.raises(UserError, match="no split 'train'"):
        make_dataset(task=name, split="train", sequence_length=32, vocab=BYTE, cache_dir=cache_dir)


@pytest.mark.parametrize("kwargs, message", [
    (dict(task="no_such_corpus"), "unknown corpus/task 'no_such_corpus'"),
    (dict(patch_size=3), "does not divide sequence_length"),
    (dict(split="dev"), "split must be one of"),
])
def test_bad_arguments_are_one_line(code_task, cache_dir, kwargs, message):
    args = dict(task=code_task, split="train", sequence_length=L, vocab=BYTE, cache_dir=cache_dir) | kwargs
    with pytest.raises(UserError, match=message) as e:
        make_dataset(**args)
    assert "\n" not in str(e.value)


def test_bad_sources_are_one_line(tmp_path, cache_dir):
    from patch_training.data import register_code_corpus, register_tfds_corpus
    (tmp_path / "empty").mkdir()
    register_code_corpus(name="test_empty", root=str(tmp_path / "empty"))
    with pytest.raises(UserError, match="has no .py files"):
        make_dataset(task="test_empty", sequence_length=L, vocab=BYTE, cache_dir=cache_dir)
    register_jsonl_corpus(name="test_missing", train_files=[str(tmp_path / "gone.jsonl")])
    with pytest.raises(UserError, match="JSONL file not found: .*gone.jsonl"):
        make_dataset(task="test_missing", sequence_length=L, vocab=BYTE, cache_dir=cache_dir)
    register_tfds_corpus(name="test_tfds", tfds_name="surely_not_a_tfds_dataset_xyz")
    with pytest.raises(UserError, match="TFDS dataset 'surely_not_a_tfds_dataset_xyz' not found") as e:
        make_dataset(task="test_tfds", sequence_length=L, vocab=BYTE, cache_dir=cache_dir)
    assert "\n" not in str(e.value)


def test_wikitext_validation_corpus(cache_dir):
    """The shared document-level WikiText-103 test file (read in place, never copied)."""
    import json
    from patch_training.data.paths import wikitext_test_file

    path = wikitext_test_file()
    if not path.is_file():
        pytest.skip(f"shared data missing: {path} (set PATCHTRAIN_SHARED_DATA)")
    texts = [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    ds = make_dataset(task="wikitext", split="validation", sequence_length=1024, vocab=BYTE, cache_dir=cache_dir)
    assert ds.meta["num_documents"] == len(texts) == 62
    assert ds.meta["row_report"]["malformed"] == 0
    assert ds.num_tokens == sum(len(t.encode()) + 1 for t in texts)


def test_gin_data_configs_bind_corpora(tmp_path, cache_dir):
    """configs/data/jsonl_corpus.gin registers a corpus by reference; the name reaches make_dataset."""
    import gin
    from patch_training.gin_utils import parse_gin

    train = write_jsonl(tmp_path / "train.jsonl", [f"train text {i} " * 4 for i in range(5)])
    val = write_jsonl(tmp_path / "val.jsonl", ["held out text " * 3])
    try:
        parse_gin(["data/jsonl_corpus.gin"], bindings=[
            f"JSONL_TRAIN_FILES = ['{train}']", f"JSONL_VALIDATION_FILES = ['{val}']",
            "factory.make_dataset.task = %TASK", "factory.make_dataset.sequence_length = 16",
            f"factory.make_dataset.cache_dir = '{cache_dir}'", "factory.make_dataset.vocab = {'kind': 'byte'}"])
        ds = make_dataset(split="train")
        assert ds.meta["task"] == "jsonl_corpus" and ds.meta["num_documents"] == 5
        for name in ("data/tfds_corpus.gin", "data/wikitext_eval.gin"):
            parse_gin([name], finalize=False)
    finally:
        gin.clear_config()


def test_named_tfds_text_dataset(tmp_path, cache_dir):
    from patch_training.data import register_tfds_corpus

    tfds_dir = tmp_path / "tfds"
    _tiny_tfds_class()(data_dir=str(tfds_dir)).download_and_prepare()
    name = register_tfds_corpus(name="test_tfds_ok", tfds_name="tiny_text_for_patch_tests", text_key="body",
                                split_map={"train": "train", "validation": "test"}, tfds_data_dir=str(tfds_dir))
    val = make_dataset(task=name, split="validation", sequence_length=32, vocab=BYTE, cache_dir=cache_dir)
    assert val.meta["num_documents"] == 2 and val.num_tokens == 2 * (len("tfds document 0. " * 3) + 1)
    train = make_dataset(task=name, split="train", sequence_length=32, vocab=BYTE, cache_dir=cache_dir, patch_size=2)
    assert train.meta["num_documents"] == 5
    register_tfds_corpus(name="test_tfds_unprepared", tfds_name="tiny_text_for_patch_tests",
                         tfds_data_dir=str(tmp_path / "elsewhere"))
    with pytest.raises(UserError, match="is not prepared in"):
        make_dataset(task="test_tfds_unprepared", sequence_length=32, vocab=BYTE, cache_dir=cache_dir)


def test_padded_rows_hold_one_piece_each(code_task, cache_dir, packed):
    padded = make_dataset(task=code_task, split="train", sequence_length=L, vocab=BYTE, cache_dir=cache_dir, pack=False)
    assert padded.mode == "padded" and padded.num_tokens == packed.num_tokens  # nothing trimmed away
    rows = _all_rows(padded)
    real = rows["decoder_target_tokens"] != 0
    np.testing.assert_array_equal(rows["decoder_segment_ids"], real.astype(np.int32))
    np.testing.assert_array_equal(rows["decoder_positions"], np.where(real, np.arange(L), 0))
    assert padded.num_rows > packed.num_rows  # tails are not shared


def test_host_batch_is_identical_in_another_process(packed, code_task, code_root, cache_dir):
    """A fresh interpreter (another host) opening the same cache computes the same slice."""
    import hashlib
    import subprocess
    import sys

    script = f"""
import hashlib, sys
from patch_training.data import make_dataset, register_code_corpus
register_code_corpus(name={code_task!r}, root={str(code_root)!r}, validation_fraction=0.2)
ds = make_dataset(task={code_task!r}, split="train", sequence_length={L}, vocab={{"kind": "byte"}}, seed=3,
                  cache_dir={str(cache_dir)!r})
b = ds.host_batch(11, 8, 1, 2)
print(hashlib.sha256(b"".join(b[k].tobytes() for k in sorted(b))).hexdigest())
print("tensorflow" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr[-2000:]
    digest, tf_loaded = out.stdout.split()
    b = packed.host_batch(11, 8, 1, 2)
    assert digest == hashlib.sha256(b"".join(b[k].tobytes() for k in sorted(b))).hexdigest()
    assert tf_loaded == "False"  # a cache hit needs no TensorFlow


@pytest.mark.parametrize("kwargs", [dict(), dict(patch_size=4), dict(pack=False)])
def test_max_tokens_keeps_whole_leading_documents(code_task, cache_dir, packed, kwargs):
    small = make_dataset(task=code_task, split="train", sequence_length=L, vocab=BYTE, cache_dir=cache_dir,
                         max_tokens=1000, **kwargs)
    assert small.fingerprint != packed.fingerprint and small.directory != packed.directory
    assert 1000 <= small.num_tokens < 1000 + 600 and small.meta["num_documents"] < packed.meta["num_documents"]
    t = _all_rows(small)["decoder_target_tokens"]
    assert int((t == 1).sum()) == small.meta["num_documents"]  # whole documents only
