"""Train a SentencePiece tokenizer on a corpus, cached by a content hash of corpus + options.

    python -m patch_training.data.train_tokenizer --corpus DIR_OR_FILE --vocab_size 8192 --out DIR

The model is trained with seqio's ids (pad=0, eos=1, unk=2, no bos) and settings suited to code:
no whitespace normalisation (indentation matters), whitespace-only pieces allowed, digits split,
and byte fallback so any character (newlines included) round-trips. A second call with the same
corpus bytes and options returns at once.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from patch_training.atomic import copy_file_atomic
from patch_training.data import corpora
from patch_training.data.paths import default_cache_dir
from patch_training.errors import UserError, run_cli, squash

TOKENIZER_FILE = "tokenizer.model"
INFO_FILE = "tokenizer_info.json"
# Bump when the training recipe changes so old cached models are not reused.
RECIPE_VERSION = 1


def default_tokenizer_dir() -> Path:
    return default_cache_dir() / "tokenizers"


def _options(vocab_size: int, model_type: str, max_sentences: int, seed: int) -> dict:
    return {"recipe": RECIPE_VERSION, "vocab_size": int(vocab_size), "model_type": model_type,
            "max_sentences": int(max_sentences), "seed": int(seed)}


def corpus_documents(corpus: str | os.PathLike, extensions: tuple[str, ...]) -> list[tuple[str, Path]]:
    """(kind, path) for every document file of the corpus; 'jsonl' files hold {"text": ...} lines."""
    root = Path(corpus)
    if root.is_file():
        files = [root]
    else:
        files = corpora.list_corpus_files(root, extensions)
    return [("jsonl" if f.suffix in (".jsonl", ".json") else "text", f) for f in files]


def corpus_hash(docs: list[tuple[str, Path]], root: Path, options: dict) -> str:
    h = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for _, f in docs:
        rel = f.name if root.is_file() else str(f.relative_to(root))
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:20]


def _write_training_lines(docs: list[tuple[str, Path]], out, report: corpora.RowReport) -> int:
    """SentencePiece trains on lines; write every non-empty line of every document."""
    n = 0
    for kind, f in docs:
        if kind == "jsonl":
            texts = corpora.iter_jsonl_texts(f, report)
        else:
            texts = [text for _, text in corpora.iter_code_documents(f.parent, [f], report)]
        for text in texts:
            for line in text.splitlines():
                if line.strip():
                    out.write(line + "\n")
                    n += 1
    return n


def train_sentencepiece(corpus: str | os.PathLike, *, vocab_size: int, out_dir: str | os.PathLike | None,
                        cache_root: str | os.PathLike | None = None, model_type: str = "bpe",
                        max_sentences: int = 2_000_000, seed: int = 0,
                        extensions: tuple[str, ...] = (".py", ".txt", ".md", ".jsonl")) -> Path:
    """Train (or fetch from cache) a tokenizer; returns the path of `tokenizer.model`.

    The cache lives in `cache_root/<hash>/`; `out_dir`, if given, receives a copy plus an info file.
    """
    import sentencepiece as spm

    root = Path(corpus)
    if not root.exists():
        raise UserError(f"tokenizer corpus not found: {root}")
    if vocab_size < 16:
        raise UserError(f"--vocab_size must be at least 16, got {vocab_size}")
    if model_type not in ("bpe", "unigram"):
        raise UserError(f"--model_type must be 'bpe' or 'unigram', got {model_type!r}")
    docs = corpus_documents(root, extensions)
    options = _options(vocab_size, model_type, max_sentences, seed)
    key = corpus_hash(docs, root, options)
    cache = Path(cache_root) if cache_root else default_tokenizer_dir()
    cached = cache / key / TOKENIZER_FILE
    if not cached.is_file():
        _train_into(cached.parent, docs, root, options, key, spm)
    if out_dir is None:
        return cached
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    info = out / INFO_FILE
    if not ((out / TOKENIZER_FILE).is_file() and info.is_file()
            and json.loads(info.read_text()).get("hash") == key):
        copy_file_atomic(cached, out / TOKENIZER_FILE)
        shutil.copyfile(cached.parent / INFO_FILE, info)
    return out / TOKENIZER_FILE


def _train_into(final_dir: Path, docs, root: Path, options: dict, key: str, spm) -> None:
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    # Train in a scratch dir and rename at the end: an interrupted run never leaves a model behind.
    tmp = Path(tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{key}."))
    try:
        report = corpora.RowReport()
        with open(tmp / "lines.txt", "w", encoding="utf-8") as f:
            n_lines = _write_training_lines(docs, f, report)
        report.log(f"tokenizer corpus {root}")
        if n_lines == 0:
            raise UserError(f"tokenizer corpus {root} has no text to train on")
        start = time.time()
        print(f"training SentencePiece ({options['model_type']}, vocab {options['vocab_size']}) "
              f"on {n_lines} lines from {len(docs)} files ...", file=sys.stderr)
        spm.set_random_generator_seed(options["seed"])  # the sentence sample is seeded
        try:
            spm.SentencePieceTrainer.train(
                input=str(tmp / "lines.txt"), model_prefix=str(tmp / "tokenizer"),
                vocab_size=options["vocab_size"], model_type=options["model_type"],
                pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                byte_fallback=True, split_digits=True, allow_whitespace_only_pieces=True,
                remove_extra_whitespaces=False, normalization_rule_name="identity",
                character_coverage=0.9995, max_sentence_length=16384,
                input_sentence_size=options["max_sentences"], shuffle_input_sentence=True,
                num_threads=os.cpu_count() or 1,
                hard_vocab_limit=False, minloglevel=2)
        except RuntimeError as e:
            raise UserError(f"SentencePiece training on {root} failed: {squash(e, 300)}") from None
        info = {"hash": key, "corpus": str(root.resolve()), "files": len(docs), "lines": n_lines,
                "malformed_rows": report.malformed, "train_seconds": round(time.time() - start, 2),
                **options}
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        (tmp / "lines.txt").unlink()
        (tmp / "tokenizer.vocab").unlink(missing_ok=True)
        if not final_dir.exists():  # else another process won the race; keep theirs
            os.rename(tmp, final_dir)
            print(f"tokenizer cached at {final_dir}", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, help="a directory (recursed) or a single file")
    ap.add_argument("--vocab_size", type=int, default=8192)
    ap.add_argument("--out", required=True, help="directory that receives tokenizer.model")
    ap.add_argument("--model_type", default="bpe", choices=["bpe", "unigram"])
    ap.add_argument("--max_sentences", type=int, default=2_000_000,
                    help="lines sampled for training (SentencePiece input_sentence_size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache_dir", default=None, help=f"model cache (default {default_tokenizer_dir()})")
    ap.add_argument("--extensions", default=".py,.txt,.md,.jsonl",
                    help="comma-separated file suffixes read from a directory corpus")
    args = ap.parse_args(argv)
    start = time.time()
    path = train_sentencepiece(args.corpus, vocab_size=args.vocab_size, out_dir=args.out,
                               cache_root=args.cache_dir, model_type=args.model_type,
                               max_sentences=args.max_sentences, seed=args.seed,
                               extensions=tuple(e if e.startswith(".") else "." + e
                                                for e in args.extensions.split(",") if e))
    print(json.dumps({"tokenizer": str(path), "seconds": round(time.time() - start, 3)}))
    return 0


if __name__ == "__main__":
    run_cli(main)
