"""Reading an HF transformers LLaMA directory: `config.json`, the safetensors weights, the tokenizer files.

Library code apart from the `hf_convert` command line, so the checkpoint opener
(`patch_training.contract.checkpoint`) and `hf_convert import` share one reader. The config is read
and checked without the weights (`read_hf_config`), so a directory that cannot be a model fails before
gigabytes are read.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from patch_training.data.hf_tokenizer import load_hf_tokenizer
from patch_training.errors import UserError, squash
from patch_training.hf_layout import expected_hf_shapes, hf_to_params

SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM",)
# Buffers some older exports contain; they are recomputed from rope_theta.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


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


def check_tokenizer_files(src: Path) -> None:
    sp = src / "tokenizer.model"
    if sp.is_file():
        from patch_training.data.vocab import check_sentencepiece_model
        check_sentencepiece_model(sp)
    if (src / "tokenizer.json").is_file():
        load_hf_tokenizer(src)



def read_hf_config(hf_dir: str | os.PathLike, *, scan_layers: bool | None = None):
    """The ModelConfig of an HF LLaMA directory, its tokenizer files checked; no weights read."""
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
    check_tokenizer_files(src)
    return config


def read_hf_params(hf_dir: str | os.PathLike, config) -> dict[str, Any]:
    """Our params pytree from the directory's safetensors, checked against `config`."""
    return hf_to_params(read_hf_tensors(Path(hf_dir), config), config)


def load_hf_dir(hf_dir: str | os.PathLike, *, scan_layers: bool | None = None) -> tuple[Any, dict[str, Any]]:
    """(ModelConfig, our params) of an HF LLaMA directory (what `hf_convert import` converts)."""
    config = read_hf_config(hf_dir, scan_layers=scan_layers)
    return config, read_hf_params(hf_dir, config)
