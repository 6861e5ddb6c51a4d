"""Convert between HF transformers LLaMA checkpoints and our params checkpoints.

    python -m patch_training.hf_convert import --hf_dir D --out CKPT
    python -m patch_training.hf_convert import --gguf FILE.gguf --out CKPT   (llama.cpp files: gguf_import)
    python -m patch_training.hf_convert export --checkpoint CKPT --hf_dir D2 [--max_shard_mb N]

HF layout: `config.json` (LlamaForCausalLM), `model.safetensors` or sharded
`model-0000i-of-0000n.safetensors` + `model.safetensors.index.json`, and tokenizer files, which are
carried over unchanged and named in `vocab.json` (tokenizer.model or tokenizer.json). The tensor
layout (names, shapes, transposes) is `hf_layout`'s. Both directions write into a temporary directory and rename it into place.
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

from patch_training.data.hf_tokenizer import load_hf_tokenizer, tokenizer_files, tokenizer_spec
from patch_training.errors import UserError, run_cli, squash
# The HF tensor layout lives apart, so the GGUF importer shares it without importing this CLI module.
from patch_training.hf_layout import (expected_hf_shapes, hf_to_params, jax_tree_index,  # noqa: F401
                                      params_to_hf)

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
# Buffers some older exports contain; they are recomputed from rope_theta.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


# ----------------------------------------------------------------------------- config


def config_from_hf(hf: dict[str, Any], where: str):
    from patch_training.model import ModelConfig

    archs = hf.get("architectures") or []
    if hf.get("model_type") != "llama" or (archs and not set(archs) & set(SUPPORTED_ARCHITECTURES)):
        raise UserError(f"{where}: unsupported architecture {archs or hf.get('model_type')!r} "
                        f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)})")
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    unsupported = [
        (rope_type not in ("default", None), f"rope scaling {rope_type!r}"),
        (hf.get("attention_bias", False), "attention_bias=true"),
        (hf.get("mlp_bias", False), "mlp_bias=true"),
        (hf.get("hidden_act", "silu") != "silu", f"hidden_act={hf.get('hidden_act')!r}"),
        (hf.get("pretraining_tp", 1) not in (1, None), "pretraining_tp != 1"),
    ]
    for bad, what in unsupported:
        if bad:
            raise UserError(f"{where}: unsupported LLaMA variant: {what}")
    try:
        heads = int(hf["num_attention_heads"])
        hidden = int(hf["hidden_size"])
        head_dim = hf.get("head_dim")
        theta = rope.get("rope_theta", hf.get("rope_theta", 10000.0))
        return ModelConfig(
            vocab_size=int(hf["vocab_size"]), hidden_size=hidden,
            intermediate_size=int(hf["intermediate_size"]),
            num_layers=int(hf["num_hidden_layers"]), num_heads=heads,
            num_kv_heads=int(hf.get("num_key_value_heads") or heads),
            head_dim=None if head_dim in (None, hidden // heads) else int(head_dim),
            rope_theta=float(theta), rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            max_seq_len=int(hf.get("max_position_embeddings", 2048)))
    except KeyError as e:
        raise UserError(f"{where}: missing field {e.args[0]!r}") from None


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


# ----------------------------------------------------------------------------- HF directory IO


def _weight_files(hf_dir: Path) -> list[Path]:
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise UserError(f"{index}: not a valid safetensors index ({e})") from None
        files = sorted({hf_dir / name for name in weight_map.values()})
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise UserError(f"{index}: lists shard(s) that do not exist: {', '.join(missing[:3])}")
        return files
    single = hf_dir / "model.safetensors"
    if single.is_file():
        return [single]
    raise UserError(f"{hf_dir}: no model.safetensors or model.safetensors.index.json "
                    f"(PyTorch .bin checkpoints are not supported; re-save with safetensors)")


def read_hf_tensors(hf_dir: Path, config) -> dict[str, np.ndarray]:
    """All tensors, checked against the names and shapes the config implies."""
    from safetensors import safe_open

    expected = expected_hf_shapes(config)
    tensors: dict[str, np.ndarray] = {}
    for path in _weight_files(hf_dir):
        try:
            # The "flax" framework reads bf16 too (plain numpy cannot).
            with safe_open(str(path), framework="flax") as f:
                for name in f.keys():
                    if name.endswith(_IGNORED_SUFFIXES):
                        continue
                    if name not in expected and not (name == "lm_head.weight" and config.tie_embeddings):
                        raise UserError(f"{path}: unexpected tensor {name!r} for a LLaMA model "
                                        f"with this config.json")
                    tensor = np.asarray(f.get_tensor(name), np.float32)
                    want = expected.get(name, expected["model.embed_tokens.weight"])
                    if tuple(tensor.shape) != want:
                        raise UserError(f"{path}: tensor {name!r} has shape {tuple(tensor.shape)}, "
                                        f"config.json implies {want}")
                    tensors[name] = tensor
        except UserError:
            raise
        except Exception as e:
            raise UserError(f"{path}: cannot read safetensors file: {squash(e, 200)}") from None
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise UserError(f"{hf_dir}: missing tensor(s) {', '.join(missing[:3])}"
                        f"{f' (+{len(missing) - 3} more)' if len(missing) > 3 else ''}")
    return tensors


def _check_tokenizer_files(src: Path) -> None:
    sp = src / "tokenizer.model"
    if sp.is_file():
        from patch_training.data.vocab import check_sentencepiece_model
        check_sentencepiece_model(sp)
    if (src / "tokenizer.json").is_file():
        load_hf_tokenizer(src)


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


def load_hf_dir(hf_dir: str | os.PathLike, *, scan_layers: bool | None = None) -> tuple[Any, dict[str, Any]]:
    """(ModelConfig, our params) from an HF LLaMA directory: config.json, safetensors, tokenizer files
    checked. The one reader of an HF directory (`import_hf`, `evals.generate --hf_dir`)."""
    import dataclasses

    src = Path(hf_dir)
    if not src.is_dir():
        raise UserError(f"HF directory not found: {src}")
    cfg_path = src / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{src}: no config.json")
    try:
        hf_config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{cfg_path}: not valid JSON ({e})") from None
    config = config_from_hf(hf_config, str(cfg_path))
    if scan_layers is not None:
        config = dataclasses.replace(config, scan_layers=scan_layers)
    _check_tokenizer_files(src)
    return config, hf_to_params(read_hf_tensors(src, config), config)


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
    from patch_training.params_io import load_params, resolve_params_dir

    root, _ = resolve_params_dir(checkpoint)
    params, config, vocab_spec = load_params(checkpoint)
    tensors = params_to_hf(params, config)
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
