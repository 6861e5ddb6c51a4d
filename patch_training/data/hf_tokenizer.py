"""The one reader of a model directory's HF tokenizer files (`tokenizer.json` and its companions).

A directory here is an HF model directory, a params checkpoint or a run dir that carries the files:

- `tokenizer.json` (the `tokenizers` library's format; most current LLaMA-family models ship only this);
- `tokenizer_config.json`: BOS/EOS strings, `add_bos_token`, and, before transformers 5, `chat_template`;
- `chat_template.jinja`: where transformers 5 writes the chat template (it wins over the config's);
- `generation_config.json`: extra end-of-turn ids (LLaMA-3 style lists).

`tokenizer_spec(dir)` says which vocabulary a directory has, as a `vocab.json` spec; `HFTokenizer`
holds what every consumer needs (encode/decode, special ids, the template); `TokenizerJsonVocabulary`
is the same tokenizer as a seqio vocabulary, so fine-tuning's seqio Tasks tokenize rows with it.
The checkpoint opener (`contract.checkpoint`), `hf_read` and `hf_convert` go through here, so
they cannot disagree about which file holds what.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from patch_training.errors import UserError, squash

HF_TOKENIZER_KIND = "hf_tokenizer"
TOKENIZER_JSON = "tokenizer.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
# Files that travel with a model's tokenizer: copied by `hf_convert import`, by `write_vocab_json`
# into run dirs, and back out by `hf_convert export`.
TOKENIZER_FILES = ("tokenizer.model", TOKENIZER_JSON, "tokenizer_config.json", CHAT_TEMPLATE_FILE,
                   "special_tokens_map.json", "added_tokens.json", "generation_config.json")


def tokenizer_files(directory: str | os.PathLike) -> list[Path]:
    src = Path(directory)
    return [src / n for n in TOKENIZER_FILES if (src / n).is_file()]


def tokenizer_spec(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The vocab spec of the tokenizer files in `directory` (relative paths), or None if it has none.
    A SentencePiece `tokenizer.model` wins when both are present: it is the original, and seqio reads it."""
    src = Path(directory)
    if (src / "tokenizer.model").is_file():
        return {"kind": "sentencepiece", "model_path": "tokenizer.model"}
    if (src / TOKENIZER_JSON).is_file():
        return {"kind": HF_TOKENIZER_KIND, "model_path": TOKENIZER_JSON}
    return None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not valid JSON ({squash(e)})") from None
    return data if isinstance(data, dict) else {}


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json writes special tokens as strings or as {"content": ...} dicts."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def read_chat_template(directory: str | os.PathLike) -> str | None:
    """The model's chat template: `chat_template.jinja` (transformers 5), else the config's entry
    (a string, or a list of named templates of which 'default' is used)."""
    src = Path(directory)
    jinja = src / CHAT_TEMPLATE_FILE
    if jinja.is_file():
        text = jinja.read_text(encoding="utf-8")
        if text.strip():
            return text
    template = _read_json(src / "tokenizer_config.json").get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    return template if isinstance(template, str) and template.strip() else None


@dataclass
class HFTokenizer:
    """A `tokenizer.json` with the special tokens and chat template of its directory."""
    directory: Path
    tokenizer: Any                  # tokenizers.Tokenizer
    bos_text: str | None
    eos_text: str | None
    bos_id: int | None
    eos_ids: list[int] = field(default_factory=list)
    add_bos: bool = False
    chat_template: str | None = None
    fingerprint: str = ""

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Ids of `text` with no special tokens added (BOS is the caller's decision)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


@functools.lru_cache(maxsize=8)
def _load_cached(tj: str, mtime_ns: int, size: int) -> HFTokenizer:
    del mtime_ns, size  # cache key only: a rewritten file is read again
    src = Path(tj).parent
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UserError("reading tokenizer.json needs the 'tokenizers' package (make setup)") from None
    try:
        tok = Tokenizer.from_file(tj)
    except Exception as e:  # noqa: BLE001 - the library's errors vary by version
        raise UserError(f"tokenizer file {tj} does not load: {squash(e)}") from None
    cfg = _read_json(src / "tokenizer_config.json")
    gen = _read_json(src / "generation_config.json")
    bos_text, eos_text = _token_text(cfg.get("bos_token")), _token_text(cfg.get("eos_token"))
    bos_id = tok.token_to_id(bos_text) if bos_text else None
    eos_ids: list[int] = []
    if eos_text and tok.token_to_id(eos_text) is not None:
        eos_ids.append(tok.token_to_id(eos_text))
    extra = gen.get("eos_token_id")  # LLaMA-3 style: several end-of-turn ids
    for e in (extra if isinstance(extra, list) else [extra]):
        if isinstance(e, int) and e not in eos_ids:
            eos_ids.append(e)
    if "add_bos_token" in cfg:
        add_bos = bool(cfg["add_bos_token"])
    else:
        # Absent from many configs (transformers 5 writes none): then the tokenizer's own post-processor
        # decides, as it does in transformers. LLaMA-family tokenizer.json files put BOS there; SmolLM2's
        # does not, and giving it BOS anyway (its BOS is <|im_start|>) changes every plain prompt.
        probe = tok.encode("a", add_special_tokens=True).ids
        add_bos = bos_id is not None and bool(probe) and probe[0] == bos_id
    template = read_chat_template(src)
    h = hashlib.sha256(Path(tj).read_bytes())
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    h.update((template or "").encode())
    return HFTokenizer(src, tok, bos_text, eos_text, bos_id, eos_ids, add_bos, template, h.hexdigest()[:16])


def load_hf_tokenizer(path: str | os.PathLike) -> HFTokenizer:
    """The tokenizer of a directory (or of a `tokenizer.json` path) with its companions."""
    p = Path(path)
    tj = p / TOKENIZER_JSON if p.is_dir() else p
    if not tj.is_file():
        raise UserError(f"{p}: no {TOKENIZER_JSON}: the model cannot read text")
    st = tj.stat()
    return _load_cached(str(tj.resolve()), st.st_mtime_ns, st.st_size)


def tokenizer_json_vocabulary(path: str | os.PathLike):
    """A seqio vocabulary over `tokenizer.json` (imports seqio, hence TensorFlow)."""
    return _vocabulary_class()(str(Path(path).resolve()))


@functools.lru_cache(maxsize=1)
def _vocabulary_class():
    from patch_training.tf_quiet import ensure_tensorflow_imported
    ensure_tensorflow_imported()
    import numpy as np
    import seqio
    import tensorflow as tf

    class TokenizerJsonVocabulary(seqio.Vocabulary):
        """seqio's view of an HF tokenizer. The `tf` paths call the Rust tokenizer through
        `tf.numpy_function`: seqio Tasks tokenize inside `tf.data`, where a Python tokenizer can only run
        that way (slower than a TF op, but the fine-tuning row cache tokenizes each row once)."""

        def __init__(self, tokenizer_json: str):
            self.model_path = tokenizer_json
            self.hf = load_hf_tokenizer(tokenizer_json)
            super().__init__(extra_ids=0)

        @property
        def eos_id(self):
            return self.hf.eos_ids[0] if self.hf.eos_ids else None

        @property
        def bos_id(self):
            return self.hf.bos_id

        @property
        def unk_id(self):
            unk = getattr(self.hf.tokenizer.model, "unk_token", None)
            return self.hf.tokenizer.token_to_id(unk) if unk else None

        @property
        def _base_vocab_size(self):
            return self.hf.vocab_size

        def _encode(self, s):
            return self.hf.encode(s)

        def _decode(self, ids):
            return self.hf.decode([i for i in ids if 0 <= int(i) < self.hf.vocab_size])

        def _encode_tf(self, s):
            def enc(x):
                if isinstance(x, np.ndarray):   # eager calls pass a 0-d object array, tf.data passes bytes
                    x = x.item()
                return np.asarray(self.hf.encode(x.decode("utf-8")), np.int32)
            if s.shape.rank == 0:
                out = tf.numpy_function(enc, [s], tf.int32, stateful=False)
                out.set_shape([None])
                return out
            return tf.ragged.stack([self._encode_tf(x) for x in tf.unstack(s)])

        def _decode_tf(self, ids):
            def dec(x):
                return np.asarray(self._decode(x.tolist()).encode("utf-8"), object)
            out = tf.numpy_function(dec, [ids], tf.string, stateful=False)
            out.set_shape([])
            return out

        def __eq__(self, other):
            return isinstance(other, TokenizerJsonVocabulary) and other.hf.fingerprint == self.hf.fingerprint

        def __hash__(self):
            return hash(self.hf.fingerprint)

    return TokenizerJsonVocabulary
