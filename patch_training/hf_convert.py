"""Convert between HF transformers LLaMA checkpoints and our params checkpoints.

    python -m patch_training.hf_convert import --hf_dir D --out CKPT
    python -m patch_training.hf_convert import --gguf FILE.gguf --out CKPT   (llama.cpp files: gguf_import)
    python -m patch_training.hf_convert export --checkpoint CKPT --hf_dir D2 [--max_shard_mb N]

HF layout: `config.json` (LlamaForCausalLM), `model.safetensors` or sharded
`model-0000i-of-0000n.safetensors` + `model.safetensors.index.json`, and tokenizer files, which are
carried over unchanged and named in `vocab.json` (tokenizer.model or tokenizer.json). The tensor
layout (names, shapes, transposes) is `hf_layout`'s; reading a directory is `hf_read`'s. Both
directions write into a temporary directory and rename it into place.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from patch_training.data.hf_tokenizer import tokenizer_files, tokenizer_spec
from patch_training.errors import UserError, run_cli
# The HF tensor layout and the HF directory reader live apart, so the GGUF importer and the checkpoint
# opener share them without importing this CLI module.
from patch_training.hf_layout import params_to_hf
from patch_training.hf_read import load_hf_dir


# ----------------------------------------------------------------------------- config


def config_to_hf(config) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size, "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads, "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.resolved_head_dim, "hidden_act": "silu",
        "max_position_embeddings": config.max_seq_len, "rms_norm_eps": config.rms_norm_eps,
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_theta": config.rope_theta, "rope_type": "default"},
        "tie_word_embeddings": config.tie_embeddings, "attention_bias": False, "mlp_bias": False,
        "torch_dtype": "float32", "dtype": "float32", "bos_token_id": None, "eos_token_id": 1,
        "pad_token_id": 0,
    }


# ----------------------------------------------------------------------------- conversions


def _atomic_dir(target: Path, overwrite: bool):
    """Context-free helper: make a temp dir beside `target`; return (tmp, commit, abort)."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:
        raise UserError(f"output directory {target} already exists and is not empty (use --overwrite)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))

    def commit():
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)

    return tmp, commit, lambda: shutil.rmtree(tmp, ignore_errors=True)


def import_hf(hf_dir: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False,
              scan_layers: bool = True) -> Path:
    """Write a params checkpoint (params_io layout) from an HF LLaMA directory."""
    from patch_training.params_io import save_params

    src = Path(hf_dir)
    config, params = load_hf_dir(src, scan_layers=scan_layers)
    extra = {p.name: p for p in tokenizer_files(src)}
    # The checkpoint names the tokenizer it carries (tokenizer.model or tokenizer.json); only a
    # directory with neither gets the byte vocabulary, and says so.
    vocab_spec = tokenizer_spec(src)
    if vocab_spec is None:
        vocab_spec = {"kind": "byte"}
        print(f"note: {src} has no tokenizer.model or tokenizer.json; vocab.json says 'byte'", file=sys.stderr)
    return save_params(out, params, config, vocab_spec, overwrite=overwrite, extra_files=extra)


def _shards(tensors: dict[str, np.ndarray], max_bytes: int | None) -> list[dict[str, np.ndarray]]:
    if not max_bytes:
        return [tensors]
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name, t in tensors.items():
        if shards[-1] and size + t.nbytes > max_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += t.nbytes
    return shards


def export_hf(checkpoint: str | os.PathLike, hf_dir: str | os.PathLike, *, overwrite: bool = False,
              max_shard_bytes: int | None = None) -> Path:
    """Write an HF LLaMA directory (fp32 safetensors, sharded above `max_shard_bytes`)."""
    from safetensors.numpy import save_file
    from patch_training.contract.checkpoint import Checkpoint

    ckpt = Checkpoint.open(checkpoint, hf=False)
    root, config, vocab_spec = ckpt.path, ckpt.config, ckpt.vocab_spec or {}  # none: no tokenizer to carry
    tensors = params_to_hf(ckpt.params, config)
    target = Path(hf_dir).absolute()
    tmp, commit, abort = _atomic_dir(target, overwrite)
    try:
        (tmp / "config.json").write_text(json.dumps(config_to_hf(config), indent=2) + "\n")
        shards = _shards(tensors, max_shard_bytes)
        if len(shards) == 1:
            save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        else:
            weight_map = {}
            for i, shard in enumerate(shards):
                name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                save_file(shard, str(tmp / name), metadata={"format": "pt"})
                weight_map.update({k: name for k in shard})
            total = sum(t.nbytes for t in tensors.values())
            (tmp / "model.safetensors.index.json").write_text(json.dumps(
                {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
        for f in tokenizer_files(root):
            shutil.copy2(f, tmp / f.name)
        if vocab_spec.get("kind") == "sentencepiece" and not (tmp / "tokenizer.model").exists():
            shutil.copy2(vocab_spec["model_path"], tmp / "tokenizer.model")
        if vocab_spec.get("kind") == "hf_tokenizer" and not (tmp / "tokenizer.json").exists():
            for f in tokenizer_files(Path(vocab_spec["model_path"]).parent):   # the tokenizer named elsewhere
                shutil.copy2(f, tmp / f.name)
        commit()
    except BaseException:
        abort()
        raise
    return target


# ----------------------------------------------------------------------------- CLI


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m patch_training.hf_convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    imp = sub.add_parser("import", help="HF LLaMA directory or GGUF file -> params checkpoint")
    src = imp.add_mutually_exclusive_group(required=True)
    src.add_argument("--hf_dir", help="HF LLaMA directory (config.json, safetensors, tokenizer files)")
    src.add_argument("--gguf", help="llama.cpp GGUF file of a LLaMA model (quantized or not)")
    imp.add_argument("--out", required=True)
    imp.add_argument("--overwrite", action="store_true")
    imp.add_argument("--no_scan_layers", action="store_true",
                     help="store one subtree per layer instead of a stacked `layers` tree")
    exp = sub.add_parser("export", help="params checkpoint or run dir -> HF LLaMA directory")
    exp.add_argument("--checkpoint", required=True)
    exp.add_argument("--hf_dir", required=True)
    exp.add_argument("--overwrite", action="store_true")
    exp.add_argument("--max_shard_mb", type=float, default=None,
                     help="split the weights into shards of at most this size (with an index)")
    args = parser.parse_args(None if argv is None else list(argv))
    if args.command == "import":
        if args.gguf:
            from patch_training.gguf_import import import_gguf
            out = import_gguf(args.gguf, args.out, overwrite=args.overwrite, scan_layers=not args.no_scan_layers)
        else:
            out = import_hf(args.hf_dir, args.out, overwrite=args.overwrite, scan_layers=not args.no_scan_layers)
    else:
        shard = int(args.max_shard_mb * 2**20) if args.max_shard_mb else None
        out = export_hf(args.checkpoint, args.hf_dir, overwrite=args.overwrite, max_shard_bytes=shard)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
