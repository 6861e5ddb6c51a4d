"""GGUF (llama.cpp) LLaMA files -> our params checkpoint, carrying the tokenizer and chat template.

    python -m patch_training.hf_convert import --gguf FILE.gguf --out CKPT

The file is read with the `gguf` library; every tensor is dequantized to fp32 by `gguf.quants`
(F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the K-quants Q2_K..Q6_K among others). llama.cpp's
converter reorders the rows of the Q and K projections of each head from HF's "rotate half" RoPE layout
into interleaved pairs; we undo that, then map llama.cpp's tensor names onto HF's and hand over to
`hf_layout.hf_to_params`, so both importers share the layout code.

The tokenizer is rebuilt from the `tokenizer.ggml.*` metadata as a `tokenizer.json` (byte-level BPE:
vocabulary, merges, control tokens as special tokens, the pre-tokenizer split that llama.cpp applies
for the file's `tokenizer.ggml.pre`), with `tokenizer_config.json`, `generation_config.json` and
`chat_template.jinja` (the transformers 5 layout), which `patch_training.data.hf_tokenizer` reads.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from patch_training.errors import UserError, squash

SUPPORTED_ARCHITECTURES = ("llama",)

# llama.cpp name (after "blk.N.") -> HF name (after "model.layers.N.").
_LAYER_NAMES = {
    "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight", "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
}
_TOP_NAMES = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
              "output.weight": "lm_head.weight"}

# How llama.cpp splits text before BPE, by `tokenizer.ggml.pre` (the regexes are the well-known GPT-2 /
# LLaMA-3 / Qwen2 ones; a split we do not know would silently tokenize differently, so it is refused).
_GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
_LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# pre type -> (regex splits applied in order, whether BPE looks a whole word up before merging)
_PRE_SPLITS: dict[str, tuple[tuple[str, ...], bool]] = {
    **{name: ((_GPT2_SPLIT,), False) for name in ("gpt-2", "gpt2", "mpt", "olmo", "jais")},
    # digits one by one, then GPT-2's split (SmolLM, StarCoder and friends)
    **{name: ((r"\p{N}", _GPT2_SPLIT), False) for name in ("smollm", "starcoder", "refact", "codeshell")},
    **{name: ((_LLAMA3_SPLIT,), True) for name in ("llama3", "llama-v3", "llama-bpe", "smaug-bpe", "dbrx")},
    **{name: ((_QWEN2_SPLIT,), False) for name in ("qwen2", "deepseek-r1-qwen")},
}
_TOKEN_CONTROL, _TOKEN_USER_DEFINED = 3, 4   # llama.cpp's token types


# ----------------------------------------------------------------------------- reading


def read_gguf(path: str | os.PathLike):
    """A `gguf.GGUFReader` over the file (memory-mapped), or one line saying why not."""
    import gguf

    p = Path(path)
    if not p.is_file():
        raise UserError(f"GGUF file not found: {p}")
    try:
        return gguf.GGUFReader(str(p))
    except Exception as e:  # noqa: BLE001 - bad magic, truncated file, unknown version
        raise UserError(f"{p}: not a readable GGUF file: {squash(e)}") from None


_MISSING = object()


def _field(reader, key: str, default: Any = _MISSING, where: str = "GGUF file") -> Any:
    f = reader.fields.get(key)
    if f is None:
        if default is _MISSING:
            raise UserError(f"{where}: missing metadata {key!r}")
        return default
    return f.contents()


def config_from_gguf(reader, where: str):
    """Our ModelConfig from the `{arch}.*` metadata; unsupported variants get one line."""
    from patch_training.model import ModelConfig

    arch = _field(reader, "general.architecture", None)
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UserError(f"{where}: unsupported architecture {arch!r} (supported: {', '.join(SUPPORTED_ARCHITECTURES)})")

    def get(key, default=_MISSING):
        return _field(reader, f"{arch}.{key}", default, where)

    names = {t.name for t in reader.tensors}
    scaling = get("rope.scaling.type", None)
    unsupported = [
        (scaling not in (None, "none"), f"rope scaling {scaling!r}"),
        ("rope_freqs.weight" in names, "per-frequency RoPE factors (rope_freqs.weight, LLaMA-3.1 style)"),
        (int(get("expert_count", 0) or 0) > 0, "mixture of experts"),
    ]
    for bad, what in unsupported:
        if bad:
            raise UserError(f"{where}: unsupported LLaMA variant: {what}")
    hidden, heads = int(get("embedding_length")), int(get("attention.head_count"))
    head_dim = int(get("attention.key_length", hidden // heads))
    rot = int(get("rope.dimension_count", head_dim))
    if rot != head_dim:
        raise UserError(f"{where}: unsupported LLaMA variant: RoPE on {rot} of {head_dim} head dimensions")
    tokens = _field(reader, "tokenizer.ggml.tokens", None)
    vocab = int(get("vocab_size", _MISSING if tokens is None else len(tokens)))
    return ModelConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=int(get("feed_forward_length")),
        num_layers=int(get("block_count")), num_heads=heads,
        num_kv_heads=int(get("attention.head_count_kv", heads)),
        head_dim=None if head_dim == hidden // heads else head_dim,
        rope_theta=float(get("rope.freq_base", 10000.0)),
        rms_norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
        tie_embeddings="output.weight" not in names,
        max_seq_len=int(get("context_length", 2048)))


def _hf_name(name: str) -> str | None:
    if name in _TOP_NAMES:
        return _TOP_NAMES[name]
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in _LAYER_NAMES:
        return f"model.layers.{parts[1]}.{_LAYER_NAMES[parts[2]]}"
    return None


def unpermute_rope_rows(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row order. Within each head, HF keeps the two rotated halves apart
    (rows [0, d/2) pair with [d/2, d)); llama.cpp interleaves them (row 2i pairs with 2i+1) because
    its RoPE kernel rotates adjacent pairs. Row 2i+j of a head goes back to row j*d/2+i."""
    rows = weight.shape[0]
    half = rows // n_heads // 2
    return weight.reshape(n_heads, half, 2, -1).transpose(0, 2, 1, 3).reshape(weight.shape)


def read_gguf_tensors(reader, config, where: str) -> dict[str, np.ndarray]:
    """HF-named fp32 tensors: dequantized, Q/K rows back in HF order, checked against the config."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize

    from patch_training.hf_layout import expected_hf_shapes

    expected = expected_hf_shapes(config)
    plan = []
    for t in reader.tensors:   # check names and types before dequantizing anything (fail in a second)
        hf = _hf_name(t.name)
        if hf is None or (hf not in expected and not (hf == "lm_head.weight" and config.tie_embeddings)):
            raise UserError(f"{where}: unexpected tensor {t.name!r} for a LLaMA model")
        qtype = GGMLQuantizationType(t.tensor_type)
        if not _can_dequantize(qtype):
            raise UserError(f"{where}: tensor {t.name!r} has type {qtype.name}, which the gguf library cannot "
                            f"dequantize (supported here: {', '.join(sorted(_supported_type_names()))})")
        plan.append((t, hf, qtype))
    tensors: dict[str, np.ndarray] = {}
    for t, hf, qtype in plan:
        shape = tuple(int(n) for n in reversed(t.shape))   # GGUF lists dimensions innermost first
        try:
            w = np.asarray(dequantize(t.data, qtype), np.float32).reshape(shape)
        except Exception as e:  # noqa: BLE001 - a truncated or malformed block
            raise UserError(f"{where}: tensor {t.name!r} ({qtype.name}) does not dequantize: {squash(e)}") from None
        if hf.endswith("q_proj.weight"):
            w = unpermute_rope_rows(w, config.num_heads)
        elif hf.endswith("k_proj.weight"):
            w = unpermute_rope_rows(w, config.num_kv_heads)
        if shape != expected[hf]:
            raise UserError(f"{where}: tensor {t.name!r} has shape {shape}, the metadata implies {expected[hf]}")
        tensors[hf] = w
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise UserError(f"{where}: missing tensor(s) {', '.join(missing[:3])}"
                        f"{f' (+{len(missing) - 3} more)' if len(missing) > 3 else ''}")
    return tensors


def _supported_type_names() -> set[str]:
    from gguf import GGMLQuantizationType
    return {q.name for q in GGMLQuantizationType if _can_dequantize(q)}


def _can_dequantize(qtype) -> bool:
    """Whether `gguf.quants` implements this type (probed on one zero block: the library raises
    NotImplementedError for the rest)."""
    from gguf.constants import GGML_QUANT_SIZES
    from gguf.quants import dequantize

    if qtype not in GGML_QUANT_SIZES:
        return False
    _, type_size = GGML_QUANT_SIZES[qtype]
    try:
        dequantize(np.zeros((1, type_size), np.uint8), qtype)
    except NotImplementedError:
        return False
    except Exception:  # noqa: BLE001 - implemented; a zero block may still upset it (e.g. a grid lookup)
        return True
    return True


# ----------------------------------------------------------------------------- tokenizer


def tokenizer_from_gguf(reader, where: str) -> tuple[str, dict[str, Any], dict[str, Any], str | None]:
    """(tokenizer.json text, tokenizer_config, generation_config, chat template) from the metadata."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    kind = _field(reader, "tokenizer.ggml.model", None)
    if kind != "gpt2":
        raise UserError(f"{where}: tokenizer model {kind!r} is not supported (only byte-level BPE, 'gpt2')")
    pre = _field(reader, "tokenizer.ggml.pre", "gpt-2")
    if pre not in _PRE_SPLITS:
        raise UserError(f"{where}: pre-tokenizer {pre!r} is not supported (known: {', '.join(sorted(_PRE_SPLITS))})")
    tokens = list(_field(reader, "tokenizer.ggml.tokens", where=where))
    types = list(_field(reader, "tokenizer.ggml.token_type", [1] * len(tokens)))
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges", where=where)]
    if any(len(m) != 2 for m in merges):
        raise UserError(f"{where}: a tokenizer.ggml.merges entry is not two space-separated tokens")
    splits, ignore_merges = _PRE_SPLITS[pre]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise UserError(f"{where}: tokenizer.ggml.tokens has duplicate entries")
    # The tokenizers library panics (no Python error) on a merge whose parts or result are not tokens.
    bad = next((m for m in merges if m[0] not in vocab or m[1] not in vocab or m[0] + m[1] not in vocab), None)
    if bad is not None:
        raise UserError(f"{where}: merge {' '.join(bad)!r} names a token that tokenizer.ggml.tokens lacks")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=ignore_merges))
    if splits == (_GPT2_SPLIT,):
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)  # GPT-2's own split
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(s), behavior="isolated") for s in splits]
            + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    # Control tokens (<|im_start|>, ...) must stay whole in text and count as special; user-defined ones
    # stay whole but are ordinary text. Byte-level vocabularies spell real tokens in the byte alphabet, so
    # a "control" token outside it is a mislabel that no text can produce: leave it alone.
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    control = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types)
               if ty == _TOKEN_CONTROL and set(t) <= alphabet]
    user = [AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types) if ty == _TOKEN_USER_DEFINED]
    tok.add_special_tokens(control)
    tok.add_tokens(user)
    if tok.get_vocab_size(with_added_tokens=True) != len(tokens):
        raise UserError(f"{where}: the rebuilt tokenizer has {tok.get_vocab_size(with_added_tokens=True)} ids, "
                        f"the file lists {len(tokens)}")

    def special(key: str) -> int | None:
        value = _field(reader, f"tokenizer.ggml.{key}", None)
        return int(value) if value is not None and 0 <= int(value) < len(tokens) else None

    bos, eos, unk, pad = special("bos_token_id"), special("eos_token_id"), special("unknown_token_id"), \
        special("padding_token_id")
    add_bos = bool(_field(reader, "tokenizer.ggml.add_bos_token", False))
    add_eos = bool(_field(reader, "tokenizer.ggml.add_eos_token", False))
    if add_bos and bos is not None:   # the tokenizer alone (outside our TextVocab) then adds BOS as the model expects
        tok.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]}:0 $A:0", pair=f"{tokens[bos]}:0 $A:0 {tokens[bos]}:1 $B:1",
            special_tokens=[(tokens[bos], bos)])
    name = lambda i: tokens[i] if i is not None else None  # noqa: E731
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": name(bos), "eos_token": name(eos),
              "unk_token": name(unk), "pad_token": name(pad), "add_bos_token": add_bos, "add_eos_token": add_eos,
              "clean_up_tokenization_spaces": False}
    ctx = _field(reader, f"{_field(reader, 'general.architecture', 'llama')}.context_length", None)
    if ctx is not None:
        config["model_max_length"] = int(ctx)
    stop = [i for i in (eos, special("eot_token_id"), special("eom_token_id")) if i is not None]
    generation = {"bos_token_id": bos, "eos_token_id": sorted(set(stop), key=stop.index) or None,
                  "pad_token_id": pad}
    template = _field(reader, "tokenizer.chat_template", None)
    return tok.to_str(pretty=True), config, generation, template if isinstance(template, str) else None


# ----------------------------------------------------------------------------- import


def load_gguf(path: str | os.PathLike, *, scan_layers: bool | None = None) -> tuple[Any, dict[str, Any]]:
    """(ModelConfig, our fp32 params) from a GGUF file."""
    import dataclasses

    from patch_training.hf_layout import hf_to_params

    reader = read_gguf(path)
    config = config_from_gguf(reader, str(path))
    if scan_layers is not None:
        config = dataclasses.replace(config, scan_layers=scan_layers)
    return config, hf_to_params(read_gguf_tensors(reader, config, str(path)), config)


def write_tokenizer_files(reader, directory: Path, where: str) -> None:
    tokenizer_json, tok_config, generation, template = tokenizer_from_gguf(reader, where)
    (directory / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    (directory / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    if template:
        (directory / "chat_template.jinja").write_text(template, encoding="utf-8")


def import_gguf(gguf_path: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
                scan_layers: bool = True) -> Path:
    """Write a params checkpoint (params_io layout) with its tokenizer files from a GGUF file."""
    from patch_training.data.hf_tokenizer import HF_TOKENIZER_KIND, load_hf_tokenizer, tokenizer_files
    from patch_training.params_io import save_params

    where = str(gguf_path)
    reader = read_gguf(gguf_path)
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise UserError(f"output directory {target} already exists and is not empty (use --overwrite)")
    import dataclasses

    from patch_training.hf_layout import hf_to_params

    # Cheap checks first (architecture, then the tokenizer), so a file we cannot use is refused in a
    # second, before the weights are dequantized.
    config = dataclasses.replace(config_from_gguf(reader, where), scan_layers=scan_layers)
    with tempfile.TemporaryDirectory(prefix="gguf-tokenizer-") as tmp:
        write_tokenizer_files(reader, Path(tmp), where)
        load_hf_tokenizer(tmp)   # what every consumer will read must load
        params = hf_to_params(read_gguf_tensors(reader, config, where), config)
        extra = {p.name: p for p in tokenizer_files(tmp)}
        return save_params(out, params, config, {"kind": HF_TOKENIZER_KIND, "model_path": "tokenizer.json"},
                           overwrite=overwrite, extra_files=extra)
