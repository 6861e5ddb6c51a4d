"""Vocabularies as JSON-able specs: seqio `ByteVocabulary` and `SentencePieceVocabulary`.

A *vocab spec* is what checkpoints and run dirs store in `vocab.json`:

    {"kind": "byte"}
    {"kind": "sentencepiece", "model_path": "tokenizer.model"}   # absolute or relative to the json
    {"kind": "hf_tokenizer", "model_path": "tokenizer.json"}     # an HF tokenizer; its companions
                                                                 # (config, chat template) sit beside it

Token ids follow seqio: pad=0 and, for the byte vocabulary and every tokenizer trained by
`train_tokenizer`, eos=1 (unk=2, no bos). A foreign model such as LLaMA-2's keeps its own ids
(unk=0, bos=1, eos=2); code that needs EOS must ask `vocab.eos_id`, never assume 1.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import gin

from patch_training.atomic import copy_file_atomic, write_json_atomic
from patch_training.data.hf_tokenizer import HF_TOKENIZER_KIND, tokenizer_files, tokenizer_json_vocabulary
from patch_training.errors import UserError, squash

BYTE_SPEC: dict[str, Any] = {"kind": "byte"}


def _seqio():
    # seqio pulls in TensorFlow (seconds); import it only when a vocabulary object is needed.
    from patch_training.tf_quiet import ensure_tensorflow_imported
    ensure_tensorflow_imported()
    import seqio
    return seqio


def check_sentencepiece_model(path: str | os.PathLike) -> None:
    """Raise a one-line UserError unless `path` is a loadable SentencePiece model."""
    import sentencepiece as spm

    p = Path(path)
    if not p.is_file():
        raise UserError(f"tokenizer file not found: {p}")
    try:
        proc = spm.SentencePieceProcessor(model_file=str(p))
    except Exception as e:  # sentencepiece raises RuntimeError/OSError with multi-line text
        reason = squash(e)
        raise UserError(f"tokenizer file {p} does not load as a SentencePiece model: {reason}") from None
    if proc.get_piece_size() <= 0:
        raise UserError(f"tokenizer file {p} has an empty vocabulary")


def load_sentencepiece(path: str | os.PathLike, extra_ids: int = 0):
    """A seqio `SentencePieceVocabulary` for an existing `tokenizer.model` (e.g. LLaMA-2's)."""
    check_sentencepiece_model(path)
    return _seqio().SentencePieceVocabulary(str(Path(path).resolve()), extra_ids=extra_ids)


def byte_vocabulary():
    return _seqio().ByteVocabulary()


def _resolve(model_path: str, base_dir: str | os.PathLike | None) -> Path:
    p = Path(os.path.expanduser(model_path))
    if not p.is_absolute() and base_dir is not None:
        p = Path(base_dir) / p
    return p


def resolve_spec(spec: Mapping[str, Any], base_dir: str | os.PathLike) -> dict[str, Any]:
    """`spec` with a relative tokenizer `model_path` made absolute against `base_dir` (the directory of
    the vocab.json that holds it), so the vocabulary opens from any working directory."""
    spec = dict(spec)
    if spec.get("kind") in ("sentencepiece", HF_TOKENIZER_KIND) and spec.get("model_path"):
        spec["model_path"] = str(_resolve(spec["model_path"], base_dir).resolve())
    return spec


def vocab_from_spec(spec: Mapping[str, Any], base_dir: str | os.PathLike | None = None):
    """Build the seqio vocabulary a spec describes; relative model paths resolve against `base_dir`."""
    if not isinstance(spec, Mapping) or "kind" not in spec:
        raise UserError(f"vocab spec must be a dict with a 'kind' key, got {spec!r}")
    kind = spec["kind"]
    if kind == "byte":
        return byte_vocabulary()
    if kind == "sentencepiece":
        if not spec.get("model_path"):
            raise UserError(f"sentencepiece vocab spec needs 'model_path': {dict(spec)!r}")
        return load_sentencepiece(_resolve(spec["model_path"], base_dir), int(spec.get("extra_ids", 0)))
    if kind == HF_TOKENIZER_KIND:
        if not spec.get("model_path"):
            raise UserError(f"{HF_TOKENIZER_KIND} vocab spec needs 'model_path': {dict(spec)!r}")
        path = _resolve(spec["model_path"], base_dir)
        if not path.is_file():
            raise UserError(f"tokenizer file not found: {path}")
        return tokenizer_json_vocabulary(path)
    raise UserError(f"unknown vocab kind {kind!r} (expected 'byte', 'sentencepiece' or '{HF_TOKENIZER_KIND}')")


class TextEncoder:
    """The part of a vocabulary that preprocessing needs (`encode`, `eos_id`, `vocab_size`), without
    TensorFlow: ids exactly as the seqio vocabulary's Python `encode` gives them."""

    def __init__(self, encode, eos_id: int, vocab_size: int):
        self.encode, self.eos_id, self.vocab_size = encode, int(eos_id), int(vocab_size)


def _byte_ids(text: str) -> list[int]:
    return [b + 3 for b in text.encode("utf-8")]  # seqio's ByteVocabulary: pad, eos, unk come first


def encoder_from_spec(spec: Mapping[str, Any], base_dir: str | os.PathLike | None = None):
    """A `TextEncoder` for byte and local SentencePiece specs (a Beam worker then holds no TensorFlow, ~0.4 GB
    per process); any other spec gets its seqio vocabulary, which has the same three members."""
    kind = spec.get("kind") if isinstance(spec, Mapping) else None
    if kind == "byte":
        return TextEncoder(_byte_ids, 1, 3 + 256)
    path = spec.get("model_path") if kind == "sentencepiece" else None
    if path and not int(spec.get("extra_ids", 0)) and "://" not in str(path):
        import sentencepiece as spm
        path = _resolve(path, base_dir)
        check_sentencepiece_model(path)
        proc = spm.SentencePieceProcessor(model_file=str(path))
        return TextEncoder(proc.EncodeAsIds, proc.eos_id(), proc.GetPieceSize())
    return vocab_from_spec(spec, base_dir)


def spec_for(vocab) -> dict[str, Any]:
    """The JSON-able spec of a seqio vocabulary (inverse of `vocab_from_spec`)."""
    seqio = _seqio()
    if isinstance(vocab, seqio.ByteVocabulary):
        return dict(BYTE_SPEC)
    if isinstance(vocab, seqio.SentencePieceVocabulary):
        spec: dict[str, Any] = {"kind": "sentencepiece",
                                "model_path": str(Path(vocab.sentencepiece_model_file).resolve())}
        if vocab.extra_ids:
            spec["extra_ids"] = int(vocab.extra_ids)
        return spec
    if hasattr(vocab, "hf") and hasattr(vocab, "model_path"):  # hf_tokenizer.TokenizerJsonVocabulary
        return {"kind": HF_TOKENIZER_KIND, "model_path": str(Path(vocab.model_path).resolve())}
    raise UserError(f"cannot describe vocabulary of type {type(vocab).__name__} as a spec")


def as_spec(vocab_or_spec) -> dict[str, Any]:
    """Accept a seqio vocabulary, a spec dict, or a path to a `vocab.json` / `tokenizer.model`."""
    if vocab_or_spec is None:
        return spec_for(get_vocabulary())
    if isinstance(vocab_or_spec, Mapping):
        return dict(vocab_or_spec)
    if isinstance(vocab_or_spec, (str, os.PathLike)):
        p = Path(vocab_or_spec)
        if p.suffix == ".json":
            return read_vocab_json(p)
        if str(vocab_or_spec) == "byte":
            return dict(BYTE_SPEC)
        if p.name == "tokenizer.json":
            return {"kind": HF_TOKENIZER_KIND, "model_path": str(p.resolve())}
        return {"kind": "sentencepiece", "model_path": str(p.resolve())}
    return spec_for(vocab_or_spec)


def spec_fingerprint(spec: Mapping[str, Any], base_dir: str | os.PathLike | None = None) -> str:
    """A short content hash of what the spec tokenizes to (the model file's bytes, not its path)."""
    h = hashlib.sha256()
    h.update(spec["kind"].encode())
    if spec["kind"] == "sentencepiece":
        path = _resolve(spec["model_path"], base_dir)
        check_sentencepiece_model(path)
        h.update(path.read_bytes())
        h.update(str(int(spec.get("extra_ids", 0))).encode())
    elif spec["kind"] == HF_TOKENIZER_KIND:
        from patch_training.data.hf_tokenizer import load_hf_tokenizer
        h.update(load_hf_tokenizer(_resolve(spec["model_path"], base_dir)).fingerprint.encode())
    return h.hexdigest()[:16]


def write_vocab_json(directory: str | os.PathLike, vocab_or_spec, copy_model: bool = True) -> Path:
    """Write `vocab.json` into a run/checkpoint dir (atomically).

    With `copy_model`, a SentencePiece model is copied next to it and referenced by a relative
    path, so the directory stays loadable after it is moved or copied to another machine.
    """
    out = Path(directory) / "vocab.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    spec = as_spec(vocab_or_spec)
    if copy_model and spec["kind"] == "sentencepiece":
        src = _resolve(spec["model_path"], None)
        check_sentencepiece_model(src)
        dst = out.parent / "tokenizer.model"
        if src.resolve() != dst.resolve():
            copy_file_atomic(src, dst)
        spec = {**spec, "model_path": "tokenizer.model"}
    elif copy_model and spec["kind"] == HF_TOKENIZER_KIND:
        # The whole tokenizer travels: tokenizer.json alone would lose BOS/EOS and the chat template.
        src = _resolve(spec["model_path"], None)
        for f in [f for f in tokenizer_files(src.parent) if f.name != "tokenizer.model"]:
            dst = out.parent / f.name
            if f.resolve() != dst.resolve():
                copy_file_atomic(f, dst)
        spec = {**spec, "model_path": "tokenizer.json"}
    return write_json_atomic(out, spec, sort_keys=False)


def read_vocab_json(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        p = p / "vocab.json"
    try:
        spec = json.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"vocab spec not found: {p}") from None
    except (OSError, ValueError) as e:
        raise UserError(f"vocab spec {p} is not valid JSON: {e}") from None
    if spec.get("kind") in ("sentencepiece", HF_TOKENIZER_KIND) and spec.get("model_path"):
        spec["model_path"] = str(_resolve(spec["model_path"], p.parent))
    return spec


@gin.configurable
def get_vocabulary(*, kind: str = "byte", model_path: str | None = None,
                   corpus: str | None = None, vocab_size: int = 8192,
                   cache_dir: str | None = None, extra_ids: int = 0):
    """The run's vocabulary (gin entry point).

    kind='byte': seqio ByteVocabulary. kind='sentencepiece': load `model_path`, or else train one
    on `corpus` (default: the interpreter's standard library, the default code corpus), cached by
    content hash so later calls are instant.
    """
    if kind == "byte":
        return byte_vocabulary()
    if kind != "sentencepiece":
        raise UserError(f"get_vocabulary.kind: unknown kind {kind!r} (expected 'byte' or 'sentencepiece')")
    if model_path:
        return load_sentencepiece(model_path, extra_ids)
    from patch_training.data.corpora import default_code_root
    from patch_training.data.train_tokenizer import default_tokenizer_dir, train_sentencepiece
    out = Path(cache_dir) / "tokenizers" if cache_dir else default_tokenizer_dir()
    model = train_sentencepiece(corpus or default_code_root(), vocab_size=vocab_size, out_dir=None,
                                cache_root=out, extensions=(".py",) if corpus is None else
                                (".py", ".txt", ".md", ".jsonl"))
    return load_sentencepiece(model, extra_ids)
