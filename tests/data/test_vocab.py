"""Vocab specs, SentencePiece training (cached by content hash) and loading."""
from __future__ import annotations

import json
import time

import pytest

from patch_training.data import vocab as vocab_lib
from patch_training.data.train_tokenizer import main as train_main, train_sentencepiece
from patch_training.errors import UserError


def test_byte_vocab_ids_and_spec_roundtrip(tmp_path):
    v = vocab_lib.vocab_from_spec({"kind": "byte"})
    assert (v.pad_id, v.eos_id) == (0, 1)
    assert vocab_lib.spec_for(v) == {"kind": "byte"}
    vocab_lib.write_vocab_json(tmp_path, v)
    assert vocab_lib.read_vocab_json(tmp_path) == {"kind": "byte"}
    assert v.decode(v.encode("def f():\n    pass")) == "def f():\n    pass"


@pytest.mark.parametrize("spec, message", [
    ({"kind": "wordpiece"}, "unknown vocab kind"),
    ({"kind": "sentencepiece"}, "needs 'model_path'"),
    ({"nokind": 1}, "'kind'"),
])
def test_bad_specs_are_one_line(spec, message):
    with pytest.raises(UserError, match=message) as e:
        vocab_lib.vocab_from_spec(spec)
    assert "\n" not in str(e.value)


def test_bad_tokenizer_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "tokenizer.model"
    bad.write_bytes(b"this is not a sentencepiece model proto \x00\xff")
    with pytest.raises(UserError, match="does not load as a SentencePiece model") as e:
        vocab_lib.load_sentencepiece(bad)
    assert "\n" not in str(e.value) and str(bad) in str(e.value)
    with pytest.raises(UserError, match="tokenizer file not found"):
        vocab_lib.vocab_from_spec({"kind": "sentencepiece", "model_path": "missing.model"}, base_dir=tmp_path)


def test_train_sentencepiece_ids_cache_and_relative_spec(tmp_path, code_root):
    cache = tmp_path / "tok_cache"
    out = tmp_path / "tok"
    model = train_sentencepiece(code_root, vocab_size=320, out_dir=out, cache_root=cache)
    assert model == out / "tokenizer.model"
    v = vocab_lib.load_sentencepiece(model)
    # seqio conventions, trained in: pad=0, eos=1 (and byte fallback keeps newlines/indentation).
    assert (v.pad_id, v.eos_id, v.unk_id) == (0, 1, 2)
    text = "def f(x):\n    return x * 3\n\tü€"
    assert v.decode(v.encode(text)) == text

    # A second call with the same corpus bytes and options is a cache hit: fast, same file.
    t0 = time.perf_counter()
    again = train_sentencepiece(code_root, vocab_size=320, out_dir=out, cache_root=cache)
    assert time.perf_counter() - t0 < 2.0
    assert again == model and len(list(cache.iterdir())) == 1
    # Different options -> a different cache entry, not a stale reuse.
    info = json.loads((out / "tokenizer_info.json").read_text())
    assert info["vocab_size"] == 320 and info["files"] > 10

    # Specs: relative model paths resolve against the json's directory.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "vocab.json").write_text(json.dumps(
        {"kind": "sentencepiece", "model_path": "../tok/tokenizer.model"}))
    spec = vocab_lib.read_vocab_json(tmp_path / "run")
    assert vocab_lib.vocab_from_spec(spec).vocab_size == v.vocab_size
    assert vocab_lib.spec_for(v)["model_path"] == str(model.resolve())
    # A run dir gets its own copy of the model and a relative path: it stays loadable when moved.
    run = tmp_path / "run2"
    vocab_lib.write_vocab_json(run, v)
    assert json.loads((run / "vocab.json").read_text())["model_path"] == "tokenizer.model"
    moved = tmp_path / "moved"
    (run).rename(moved)
    assert vocab_lib.vocab_from_spec(vocab_lib.read_vocab_json(moved)).encode("x = 1") == v.encode("x = 1")

    # The CLI: same hash -> instant, prints JSON; a missing corpus is one line and exit 2.
    assert train_main(["--corpus", str(code_root), "--vocab_size", "320", "--out", str(out),
                       "--cache_dir", str(cache)]) == 0
    with pytest.raises(UserError, match="tokenizer corpus not found"):
        train_main(["--corpus", str(tmp_path / "nope"), "--vocab_size", "320", "--out", str(out)])


def test_foreign_sentencepiece_ids_are_respected(tmp_path, code_root):
    """A LLaMA-style model (unk=0, bos=1, eos=2) loads as is; its EOS id is what data uses."""
    import sentencepiece as spm

    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(f.read_text() for f in sorted(code_root.rglob("*.py"))))
    spm.SentencePieceTrainer.train(input=str(lines), model_prefix=str(tmp_path / "llama_like"), vocab_size=120,
                                   unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2, hard_vocab_limit=False)
    v = vocab_lib.load_sentencepiece(tmp_path / "llama_like.model")
    assert v.eos_id == 2 and v.pad_id == 0
    assert vocab_lib.get_vocabulary(kind="sentencepiece", model_path=str(tmp_path / "llama_like.model")).eos_id == 2


def test_the_preprocessing_encoder_gives_seqio_ids_without_tensorflow(tmp_path, code_root):
    """The row store's Beam workers tokenize with `encoder_from_spec`: the seqio vocabulary's ids, EOS and
    size, for byte and SentencePiece specs (also a foreign model's ids), with no TensorFlow imported."""
    import subprocess
    import sys

    import sentencepiece as spm

    from tests.support.xla_env import subprocess_env
    lines = tmp_path / "lines.txt"
    lines.write_text("\n".join(f.read_text() for f in sorted(code_root.rglob("*.py"))))
    spm.SentencePieceTrainer.train(input=str(lines), model_prefix=str(tmp_path / "foreign"), vocab_size=120,
                                   unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2, hard_vocab_limit=False)
    texts = ["def f(x):\n    return x * 2\n", "", "  spaces  and\ttabs ", "naïve café ✓ 🐍 日本語", "\x00\x7f"]
    specs = [{"kind": "byte"}, {"kind": "sentencepiece", "model_path": str(tmp_path / "foreign.model")}]
    for spec in specs:
        fast, seqio_vocab = vocab_lib.encoder_from_spec(spec), vocab_lib.vocab_from_spec(spec)
        assert isinstance(fast, vocab_lib.TextEncoder)
        assert (fast.eos_id, fast.vocab_size) == (seqio_vocab.eos_id, seqio_vocab.vocab_size)
        for text in texts:
            assert list(fast.encode(text)) == list(seqio_vocab.encode(text)), (spec["kind"], text)
    assert vocab_lib.encoder_from_spec(specs[1]).eos_id == 2
    check = ("import json, sys\nfrom patch_training.data import store_build\n"
             "for spec in json.loads(sys.argv[1]):\n"
             "    store_build._vocab(json.dumps(spec)).encode('def f(): pass')\n"
             "print(sorted(m for m in ('tensorflow', 'seqio') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", check, json.dumps(specs)], capture_output=True, text=True,
                       env=subprocess_env(), timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr[-2000:])
