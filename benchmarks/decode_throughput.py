"""Greedy decode throughput: our jitted KV-cache loop vs transformers' PyTorch LLaMA, same weights.

    python -m benchmarks.decode_throughput [--batch 8] [--new_tokens 128] [--prompt_len 16] [--repeats 3]

The `small` shape (configs/models/small.gin) with random weights, on CPU. Both sides decode the same
random prompts for exactly `new_tokens` tokens (no early stop); compile/warm-up runs are excluded and
the best of `repeats` timed runs is reported. The last stdout line is one JSON object with
`ours_tokens_per_s`, `reference_tokens_per_s`, `ratio` (ours / reference) and context.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def _small_config():
    import gin
    from patch_training.gin_utils import CONFIG_ROOT
    from patch_training.model import ModelConfig

    gin.clear_config()
    gin.parse_config_file(str(CONFIG_ROOT / "models" / "small.gin"))
    config = ModelConfig()
    gin.clear_config()
    return config


def _best_time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--prompt_len", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="torch intra-op threads (XLA uses all cores)")
    args = parser.parse_args()

    import jax
    import torch
    import transformers

    from evals.decoding import Decoder
    from patch_training.hf_convert import config_to_hf, params_to_hf
    from patch_training.model import count_params, init_params

    jax.config.update("jax_platforms", "cpu")
    torch.set_num_threads(args.threads)
    config = _small_config()
    params = init_params(config, jax.random.key(0))
    print(f"small model: {count_params(params) / 1e6:.1f}M params; batch {args.batch}, "
          f"prompt {args.prompt_len}, {args.new_tokens} new tokens, greedy", flush=True)
    prompts = np.random.default_rng(0).integers(3, config.vocab_size, (args.batch, args.prompt_len))

    decoder = Decoder(config, params, batch_size=args.batch)
    run_ours = lambda: decoder.generate(prompts.tolist(), max_new_tokens=args.new_tokens,
                                        stop_tokens=[])
    start = time.perf_counter()
    ours_out = run_ours()  # compiles
    print(f"ours: compile + first run {time.perf_counter() - start:.1f}s", flush=True)
    ours_s = _best_time(run_ours, args.repeats)
    print(f"ours: {ours_s:.2f}s per batch", flush=True)

    hf_config = transformers.LlamaConfig(**{k: v for k, v in config_to_hf(config).items()
                                            if k not in ("architectures", "model_type")})
    ref = transformers.LlamaForCausalLM(hf_config).eval()
    state = {k: torch.from_numpy(np.array(v)) for k, v in params_to_hf(params, config).items()}
    ref.load_state_dict(state, strict=True)
    input_ids = torch.as_tensor(prompts)

    def run_ref():
        with torch.inference_mode():
            return ref.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                do_sample=False, eos_token_id=None, pad_token_id=0)

    ref_out = run_ref()  # warm-up
    ref_s = _best_time(run_ref, args.repeats)
    print(f"transformers: {ref_s:.2f}s per batch", flush=True)

    ours_tokens = np.array([r[0].token_ids for r in ours_out])
    ref_tokens = ref_out[:, args.prompt_len:].numpy()
    generated = args.batch * args.new_tokens
    result = {
        "benchmark": "decode_throughput",
        "model": "small",
        "batch": args.batch,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "ours_tokens_per_s": round(generated / ours_s, 1),
        "reference_tokens_per_s": round(generated / ref_s, 1),
        "ratio": round(ref_s / ours_s, 3),
        # Same weights and greedy: the generations should agree (fp32 rounding can split late ties).
        "greedy_token_agreement": round(float(np.mean(ours_tokens == ref_tokens)), 4),
        "reference": f"transformers {transformers.__version__} LlamaForCausalLM, torch "
                     f"{torch.__version__}, {args.threads} threads",
        "device": f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
