"""HF transformers LLaMA tensor names and shapes <-> our params pytree (both importers and the exporter).

HF stores Linear weights as [out, in]; ours are [in, (heads, head_dim) | out]. HF's LLaMA rotary
embedding uses the "rotate half" layout, as ours does, so no permutation is needed here (GGUF files
need one: `gguf_import` undoes it before handing tensors over).
"""
from __future__ import annotations

from typing import Any

import numpy as np



def _hf_layer_names(i: int) -> dict[str, str]:
    p = f"model.layers.{i}."
    return {"q": p + "self_attn.q_proj.weight", "k": p + "self_attn.k_proj.weight",
            "v": p + "self_attn.v_proj.weight", "o": p + "self_attn.o_proj.weight",
            "gate": p + "mlp.gate_proj.weight", "up": p + "mlp.up_proj.weight",
            "down": p + "mlp.down_proj.weight", "attn_norm": p + "input_layernorm.weight",
            "mlp_norm": p + "post_attention_layernorm.weight"}


def expected_hf_shapes(config) -> dict[str, tuple[int, ...]]:
    d, f, v = config.hidden_size, config.intermediate_size, config.vocab_size
    q, kv = config.num_heads * config.resolved_head_dim, config.num_kv_heads * config.resolved_head_dim
    shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,)}
    if not config.tie_embeddings:
        shapes["lm_head.weight"] = (v, d)
    for i in range(config.num_layers):
        n = _hf_layer_names(i)
        shapes.update({n["q"]: (q, d), n["k"]: (kv, d), n["v"]: (kv, d), n["o"]: (d, q),
                       n["gate"]: (f, d), n["up"]: (f, d), n["down"]: (d, f),
                       n["attn_norm"]: (d,), n["mlp_norm"]: (d,)})
    return shapes


def hf_to_params(tensors: dict[str, np.ndarray], config) -> dict[str, Any]:
    """Our (unboxed fp32) params pytree from HF tensors; `tensors` must already be checked."""
    d, h, kvh, hd = config.hidden_size, config.num_heads, config.num_kv_heads, config.resolved_head_dim
    f32 = lambda x: np.asarray(x, np.float32)

    def layer(i: int) -> dict[str, Any]:
        n = _hf_layer_names(i)
        return {
            "attn": {"q_proj": f32(tensors[n["q"]]).T.reshape(d, h, hd),
                     "k_proj": f32(tensors[n["k"]]).T.reshape(d, kvh, hd),
                     "v_proj": f32(tensors[n["v"]]).T.reshape(d, kvh, hd),
                     "o_proj": f32(tensors[n["o"]]).T.reshape(h, hd, d)},
            "attn_norm": {"scale": f32(tensors[n["attn_norm"]])},
            "mlp": {"gate_proj": f32(tensors[n["gate"]]).T, "up_proj": f32(tensors[n["up"]]).T,
                    "down_proj": f32(tensors[n["down"]]).T},
            "mlp_norm": {"scale": f32(tensors[n["mlp_norm"]])},
        }

    layers = [layer(i) for i in range(config.num_layers)]
    params: dict[str, Any] = {"embedding": f32(tensors["model.embed_tokens.weight"]),
                              "final_norm": {"scale": f32(tensors["model.norm.weight"])}}
    if not config.tie_embeddings:
        params["lm_head"] = f32(tensors["lm_head.weight"]).T
    if config.scan_layers:
        import jax
        params["layers"] = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *layers)
    else:
        params.update({f"layers_{i}": lp for i, lp in enumerate(layers)})
    return params


def params_to_hf(params: dict[str, Any], config) -> dict[str, np.ndarray]:
    """HF-named fp32 tensors from our params pytree (scanned or not)."""
    d, q = config.hidden_size, config.num_heads * config.resolved_head_dim
    kv = config.num_kv_heads * config.resolved_head_dim
    arr = lambda x: np.ascontiguousarray(np.asarray(x, np.float32))
    out = {"model.embed_tokens.weight": arr(params["embedding"]),
           "model.norm.weight": arr(params["final_norm"]["scale"])}
    if not config.tie_embeddings:
        out["lm_head.weight"] = arr(np.asarray(params["lm_head"]).T)
    for i in range(config.num_layers):
        lp = (jax_tree_index(params["layers"], i) if "layers" in params else params[f"layers_{i}"])
        n = _hf_layer_names(i)
        out[n["q"]] = arr(np.asarray(lp["attn"]["q_proj"]).reshape(d, q).T)
        out[n["k"]] = arr(np.asarray(lp["attn"]["k_proj"]).reshape(d, kv).T)
        out[n["v"]] = arr(np.asarray(lp["attn"]["v_proj"]).reshape(d, kv).T)
        out[n["o"]] = arr(np.asarray(lp["attn"]["o_proj"]).reshape(q, d).T)
        out[n["gate"]] = arr(np.asarray(lp["mlp"]["gate_proj"]).T)
        out[n["up"]] = arr(np.asarray(lp["mlp"]["up_proj"]).T)
        out[n["down"]] = arr(np.asarray(lp["mlp"]["down_proj"]).T)
        out[n["attn_norm"]] = arr(lp["attn_norm"]["scale"])
        out[n["mlp_norm"]] = arr(lp["mlp_norm"]["scale"])
    return out


def jax_tree_index(tree: Any, i: int) -> Any:
    if isinstance(tree, dict):
        return {k: jax_tree_index(v, i) for k, v in tree.items()}
    return np.asarray(tree)[i]
