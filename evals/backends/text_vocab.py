"""Text <-> token ids for the in-process backend, with BOS handled once and optional chat templates.

Two sources of a vocabulary:
- a seqio vocabulary (our checkpoints: byte or SentencePiece), wrapped as is;
- a directory that ships `tokenizer.json` (an HF model directory, or a checkpoint imported from one or
  from a GGUF file), read by `patch_training.data.hf_tokenizer`: BOS/EOS strings, extra end-of-turn ids
  and the Jinja chat template (`chat_template.jinja` or `tokenizer_config.json`).

BOS policy: a prompt is encoded without special tokens, then BOS is put in front exactly once when the
vocabulary wants one (`add_bos`), unless the text already begins with the BOS string (a chat template
that writes `{{ bos_token }}` itself).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from patch_training.errors import UserError

log = logging.getLogger(__name__)


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
                            "(neither chat_template.jinja nor tokenizer_config.json 'chat_template')")
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

    def encode_chat(self, messages: list[dict[str, str]], assistant_prefix: str = "") -> list[int]:
        """The rendered conversation, its assistant turn opened; `assistant_prefix` is written into that turn (the
        answer continues it: what chat APIs call continuing the final message)."""
        ids = self.encode_prompt(self.render_chat(messages) + assistant_prefix)
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


def from_hf_dir(hf_dir: str | Path) -> TextVocab:
    """A `tokenizers`-backed vocabulary from a directory's `tokenizer.json` and its companions (an HF model
    directory or a checkpoint that carries them; `patch_training.data.hf_tokenizer` reads them)."""
    from patch_training.data.hf_tokenizer import load_hf_tokenizer

    tok = load_hf_tokenizer(hf_dir)
    return TextVocab(encode_fn=tok.encode, decode_fn=tok.decode, vocab_size=tok.vocab_size, bos_id=tok.bos_id,
                     eos_ids=tok.eos_ids, bos_text=tok.bos_text, eos_text=tok.eos_text, add_bos=tok.add_bos,
                     chat_template=tok.chat_template, fingerprint=tok.fingerprint, name=str(hf_dir))


def open_text_vocab(spec: dict, *, add_bos: bool | None, default_add_bos: bool, name: str) -> TextVocab:
    """The TextVocab of a vocab spec whose `model_path` is absolute (`patch_training.data.vocab.resolve_spec`).

    add_bos: the caller's choice; None = the tokenizer config's for an HF tokenizer, else `default_add_bos`.
    A SentencePiece model also takes the chat template that sits beside it (an imported HF checkpoint).
    """
    import hashlib
    from patch_training.data.hf_tokenizer import HF_TOKENIZER_KIND, read_chat_template
    from patch_training.data.vocab import vocab_from_spec

    kind = spec.get("kind")
    if kind == "byte":  # no seqio import (TensorFlow) for the byte vocabulary
        return byte_text_vocab(add_bos=bool(add_bos))
    if kind == HF_TOKENIZER_KIND:
        vocab = from_hf_dir(Path(spec["model_path"]).parent)
        vocab.name = name
        if add_bos is not None:
            vocab.add_bos = add_bos
        return vocab
    model = Path(spec["model_path"])
    vocab = from_seqio(vocab_from_spec(spec), add_bos=default_add_bos if add_bos is None else add_bos, name=name)
    vocab.fingerprint = hashlib.sha256(model.read_bytes()).hexdigest()[:16]
    vocab.chat_template = read_chat_template(model.parent)
    return vocab
