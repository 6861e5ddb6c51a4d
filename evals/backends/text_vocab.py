"""Text <-> token ids for the in-process backend, with BOS handled once and optional chat templates.

Two sources of a vocabulary:
- a seqio vocabulary (our checkpoints: byte or SentencePiece), wrapped as is;
- an HF directory that ships `tokenizer.json` (most current LLaMA-family models ship only that),
  loaded with the `tokenizers` library; `tokenizer_config.json` gives the BOS/EOS strings and the
  Jinja chat template, `generation_config.json` any extra end-of-turn ids.

BOS policy: a prompt is encoded without special tokens, then BOS is put in front exactly once when the
vocabulary wants one (`add_bos`), unless the text already begins with the BOS string (a chat template
that writes `{{ bos_token }}` itself).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

from patch_training.errors import UserError

log = logging.getLogger(__name__)


def _token_text(value: Any) -> str | None:
    """tokenizer_config.json writes special tokens as strings or as {"content": ...} dicts."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class TextVocab:
    """What the backend needs from a tokenizer: encode/decode, special ids, chat formatting."""

    def __init__(self, *, encode_fn, decode_fn, vocab_size: int, bos_id: int | None, eos_ids: Sequence[int],
                 bos_text: str | None = None, eos_text: str | None = None, add_bos: bool = False,
                 chat_template: str | None = None, fingerprint: str = "", name: str = ""):
        self._encode = encode_fn
        self._decode = decode_fn
        self.vocab_size = int(vocab_size)
        self.bos_id = bos_id
        self.eos_ids = tuple(int(e) for e in eos_ids if e is not None and e >= 0)
        self.eos_id = self.eos_ids[0] if self.eos_ids else None   # what evals.decoding.Decoder reads
        self.bos_text = bos_text
        self.eos_text = eos_text
        self.add_bos = add_bos
        self.chat_template = chat_template
        self.fingerprint = fingerprint
        self.name = name
        self._logged_chat_example = False

    # -- plain text
    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, no special tokens added."""
        return [int(t) for t in self._encode(text)]

    def decode(self, ids: Sequence[int]) -> str:
        return self._decode([int(t) for t in ids])

    def encode_prompt(self, text: str) -> list[int]:
        """A prompt's ids with BOS exactly once (when this vocabulary uses one)."""
        if self.bos_text and text.startswith(self.bos_text) and self.bos_id is not None:
            return [self.bos_id] + self.encode(text[len(self.bos_text):])
        ids = self.encode(text)
        if self.add_bos and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids = [self.bos_id] + ids
        return ids

    def start_ids(self) -> list[int]:
        """What to condition on when the context is empty: BOS, else EOS (as lm-evaluation-harness does)."""
        if self.bos_id is not None:
            return [self.bos_id]
        if self.eos_id is not None:
            return [self.eos_id]
        raise UserError(f"{self.name}: an empty context needs a BOS or EOS token, and this vocabulary has neither")

    # -- chat
    def render_chat(self, messages: list[dict[str, str]]) -> str:
        """The chat template applied to `messages`, ending with the assistant's turn opener."""
        if not self.chat_template:
            raise UserError(f"{self.name}: chat formatting was asked for, but the tokenizer has no chat template "
                            "(tokenizer_config.json 'chat_template')")
        try:
            from jinja2.sandbox import ImmutableSandboxedEnvironment
        except ImportError:
            raise UserError("chat templates need the 'jinja2' package (make setup-hf)") from None

        def raise_exception(msg):
            raise UserError(f"{self.name}: chat template refused the messages: {msg}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        try:
            template = env.from_string(self.chat_template)
        except Exception as e:  # noqa: BLE001 - a template from someone's tokenizer_config.json
            raise UserError(f"{self.name}: chat template does not parse: {' '.join(str(e).split())[:200]}") from None
        return template.render(messages=messages, add_generation_prompt=True, bos_token=self.bos_text or "",
                               eos_token=self.eos_text or "")

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        ids = self.encode_prompt(self.render_chat(messages))
        if not self._logged_chat_example:  # one example of exactly what the model sees
            self._logged_chat_example = True
            log.info("chat template applied; the first prompt as sent (%d token ids): %s", len(ids), ids)
        return ids


def from_seqio(vocab: Any, *, add_bos: bool = False, fingerprint: str = "", name: str = "checkpoint") -> TextVocab:
    """Wrap a seqio vocabulary (our checkpoints). Our pretraining packs text without BOS, so none by default."""
    eos = getattr(vocab, "eos_id", None)
    bos = getattr(vocab, "bos_id", None)
    return TextVocab(encode_fn=lambda s: vocab.encode(s), decode_fn=lambda ids: vocab.decode(ids),
                     vocab_size=vocab.vocab_size, bos_id=bos if isinstance(bos, int) and bos >= 0 else None,
                     eos_ids=[eos] if isinstance(eos, int) else [], add_bos=add_bos,
                     fingerprint=fingerprint, name=name)


BYTE_OFFSET = 3  # seqio's ByteVocabulary: 0 pad, 1 EOS, 2 UNK, then the 256 byte values


def byte_text_vocab(*, add_bos: bool = False) -> TextVocab:
    """seqio's ByteVocabulary, id for id, without importing seqio (and TensorFlow behind it)."""
    def decode(ids):
        ids = list(ids)
        if 1 in ids:  # like seqio, text ends at EOS
            ids = ids[:ids.index(1)]
        return bytes(i - BYTE_OFFSET for i in ids if BYTE_OFFSET <= i < 256 + BYTE_OFFSET).decode("utf-8", "ignore")

    return TextVocab(encode_fn=lambda s: [b + BYTE_OFFSET for b in s.encode("utf-8")], decode_fn=decode,
                     vocab_size=256 + BYTE_OFFSET, bos_id=None, eos_ids=[1], add_bos=add_bos,
                     fingerprint="byte", name="byte")


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    return data if isinstance(data, dict) else {}


def from_hf_dir(hf_dir: str | Path) -> TextVocab:
    """A `tokenizers`-backed vocabulary from an HF model directory's `tokenizer.json`."""
    src = Path(hf_dir)
    tj = src / "tokenizer.json"
    if not tj.is_file():
        raise UserError(f"{src}: no tokenizer.json (and no tokenizer.model): the model cannot read text")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UserError("reading tokenizer.json needs the 'tokenizers' package (make setup-hf)") from None
    try:
        tok = Tokenizer.from_file(str(tj))
    except Exception as e:  # noqa: BLE001 - library errors vary by version
        raise UserError(f"tokenizer file {tj} does not load: {' '.join(str(e).split())[:200]}") from None
    cfg = _read_json(src / "tokenizer_config.json")
    gen = _read_json(src / "generation_config.json")
    bos_text, eos_text = _token_text(cfg.get("bos_token")), _token_text(cfg.get("eos_token"))
    bos_id = tok.token_to_id(bos_text) if bos_text else None
    eos_ids = []
    if eos_text and tok.token_to_id(eos_text) is not None:
        eos_ids.append(tok.token_to_id(eos_text))
    extra = gen.get("eos_token_id")  # LLaMA-3 style: several end-of-turn ids
    for e in (extra if isinstance(extra, list) else [extra]):
        if isinstance(e, int) and e not in eos_ids:
            eos_ids.append(e)
    # add_bos_token is absent in many configs; LLaMA-family post-processors add BOS, so default to it
    add_bos = bool(cfg.get("add_bos_token", bos_id is not None))
    template = cfg.get("chat_template")
    if isinstance(template, list):  # [{"name": "default", "template": ...}, ...]
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default") or next(iter(named.values()), None)
    h = hashlib.sha256(tj.read_bytes())
    h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
    return TextVocab(encode_fn=lambda s: tok.encode(s, add_special_tokens=False).ids,
                     decode_fn=lambda ids: tok.decode(ids, skip_special_tokens=False),
                     vocab_size=tok.get_vocab_size(with_added_tokens=True), bos_id=bos_id, eos_ids=eos_ids,
                     bos_text=bos_text, eos_text=eos_text, add_bos=add_bos,
                     chat_template=template if isinstance(template, str) else None,
                     fingerprint=h.hexdigest()[:16], name=str(src))
