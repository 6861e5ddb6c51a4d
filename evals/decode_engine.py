"""Continuous-batching decode engine: a fixed set of B rows, each refilled with a new prompt as soon
as its completion ends, so short completions never wait for the longest one in their batch.

Host/device split: the device runs a jitted loop of up to `chunk_steps` decode steps over all rows
(sampling, stop tokens, per-row length limits, recording) and returns early when a row finishes
while prompts are still waiting. The host then reads the finished rows out and prefills waiting
prompts into those rows (one jitted prefill per prompt, prompt length bucketed so a few compiled
shapes serve every prompt). Waiting prompts are taken longest first, which groups similar lengths.

Each row has its own length and its own slots `0..len-1` in a `[B, KV_H, S, D]` cache (see
`evals.decode_forward`), and sample j of prompt i uses key fold_in(fold_in(seed, i), j) folded with
the token index, so a sample does not depend on which rows it shared the device with.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from evals import decode_forward
from evals.sampling import SamplingConfig, sample_tokens

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """Everything static about one engine's compiled functions (hashable: a jit static argument)."""
    config: Any                      # patch_training.model.ModelConfig
    sampling: SamplingConfig
    rows: int                        # B
    cache_len: int                   # S
    max_new_tokens: int              # width of the per-row output buffers
    stop_tokens: tuple[int, ...]
    return_probs: bool
    compute_dtype: str
    cache_dtype: str


@dataclasses.dataclass
class Finished:
    """One finished row as the host reads it back."""
    request: int
    token_ids: list[int]
    logprobs: list[float]
    stopped: bool
    probs: np.ndarray | None


def _empty_state(spec: EngineSpec) -> dict[str, Any]:
    cfg = spec.config
    b, s, n = spec.rows, spec.cache_len, spec.max_new_tokens
    shape = (b, cfg.num_kv_heads, s, cfg.resolved_head_dim)
    cache_dtype = jnp.dtype(spec.cache_dtype)
    state = {
        "cache": [(jnp.zeros(shape, cache_dtype), jnp.zeros(shape, cache_dtype))
                  for _ in range(cfg.num_layers)],
        "logits": jnp.zeros((b, cfg.vocab_size), jnp.float32),
        "pos": jnp.zeros((b,), jnp.int32),        # slot the next fed token is written to
        "gen": jnp.zeros((b,), jnp.int32),        # tokens kept so far (also the sampling step)
        "limit": jnp.zeros((b,), jnp.int32),      # per-row max new tokens
        "active": jnp.zeros((b,), bool),
        "stopped": jnp.zeros((b,), bool),
        "key": jax.random.split(jax.random.key(0), b),
        "tokens": jnp.zeros((b, n), jnp.int32),
        "logprobs": jnp.zeros((b, n), jnp.float32),
    }
    if spec.return_probs:
        state["probs"] = jnp.zeros((b, n, cfg.vocab_size), jnp.float32)
    return state


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnames=("state",))
def _insert(weights: Any, state: dict[str, Any], row: Array, tokens: Array, length: Array, key: Array,
            limit: Array, *, spec: EngineSpec) -> dict[str, Any]:
    """Prefill one right-padded prompt tokens[1, L] into row `row` and arm it."""
    dtype = jnp.dtype(spec.compute_dtype)
    kv, logits = decode_forward.prefill(weights, tokens, length[None], spec.config, dtype,
                                        jnp.dtype(spec.cache_dtype))
    new = dict(state)
    new["cache"] = [(ck.at[row, :, :tokens.shape[1], :].set(k[0]),
                     cv.at[row, :, :tokens.shape[1], :].set(v[0]))
                    for (ck, cv), (k, v) in zip(state["cache"], kv)]
    new["logits"] = state["logits"].at[row].set(logits[0])
    new["pos"] = state["pos"].at[row].set(length)
    new["gen"] = state["gen"].at[row].set(0)
    new["limit"] = state["limit"].at[row].set(limit)
    new["active"] = state["active"].at[row].set(True)
    new["stopped"] = state["stopped"].at[row].set(False)
    new["key"] = state["key"].at[row].set(key)
    return new


@functools.partial(jax.jit, static_argnames=("spec", "visible"), donate_argnames=("state",))
def _run(weights: Any, state: dict[str, Any], exit_on_finish: Array, chunk_steps: Array, *,
         spec: EngineSpec, visible: int) -> dict[str, Any]:
    """Up to chunk_steps decode steps; stops early when no row is active, or (exit_on_finish) when a
    row has just finished so the host can refill it. Attention reads the first `visible` slots only
    (the host picks it above every live row's position + chunk_steps)."""
    dtype = jnp.dtype(spec.compute_dtype)
    stop = jnp.asarray(spec.stop_tokens or (-1,), jnp.int32)
    n = spec.max_new_tokens
    rows = jnp.arange(spec.rows)

    def cond(carry):
        s, i, finished = carry
        return (i < chunk_steps) & jnp.any(s["active"]) & ~(exit_on_finish & finished)

    def body(carry):
        s, i, _ = carry
        active = s["active"]
        keys = jax.vmap(jax.random.fold_in)(s["key"], s["gen"])
        token = sample_tokens(s["logits"], keys, spec.sampling)
        log_probs = jax.nn.log_softmax(s["logits"], axis=-1)
        token_logprob = jnp.take_along_axis(log_probs, token[:, None], axis=-1)[:, 0]
        is_stop = jnp.any(token[:, None] == stop[None, :], axis=-1)
        keep = active & ~is_stop
        at = jnp.where(keep, s["gen"], n)                 # out of range = not written
        new = dict(s)
        new["tokens"] = s["tokens"].at[rows, at].set(token, mode="drop")
        new["logprobs"] = s["logprobs"].at[rows, at].set(token_logprob, mode="drop")
        if spec.return_probs:
            new["probs"] = s["probs"].at[rows, at].set(jnp.exp(log_probs), mode="drop")
        gen = s["gen"] + keep.astype(jnp.int32)
        ended = active & (is_stop | (gen >= s["limit"]))
        new["gen"] = gen
        new["stopped"] = s["stopped"] | (active & is_stop)
        new["active"] = active & ~ended
        # Every row feeds its token (batched); rows that are idle write a slot nobody reads.
        new["cache"], new["logits"] = decode_forward.step(weights, s["cache"], token, s["pos"],
                                                          spec.config, dtype, visible)
        new["pos"] = s["pos"] + keep.astype(jnp.int32)
        return new, i + 1, jnp.any(ended)

    final, _, _ = jax.lax.while_loop(cond, body, (state, jnp.zeros((), jnp.int32), jnp.zeros((), bool)))
    return final


@functools.partial(jax.jit, static_argnames=("dtype",))
def _cast(weights: Any, *, dtype: str) -> Any:
    return decode_forward.cast_weights(weights, dtype)


def prepare_weights(params: Any, config: Any, compute_dtype: str) -> Any:
    """Unstack the layers (once) and cast the matmul weights to the compute dtype (once)."""
    return _cast(decode_forward.unstack_params(params, config.num_layers), dtype=compute_dtype)


def bucket_length(n: int) -> int:
    """Prompt lengths are padded to 16, 32, 64, ... so a few compiled prefill shapes serve all."""
    return max(16, 1 << (int(n) - 1).bit_length())


def run_engine(weights: Any, spec: EngineSpec, prompts: Sequence[Sequence[int]], keys: Sequence[Array],
               limits: Sequence[int], *, chunk_steps: int = 256,
               on_finish: Callable[[Finished], None] | None = None,
               progress: Callable[[int, int, int], None] | None = None) -> list[Finished]:
    """Decode every request (prompt, key, limit); results in request order.

    `progress(done, total, tokens)` is called after each return to the host.
    """
    total = len(prompts)
    order = sorted(range(total), key=lambda r: -len(prompts[r]))   # longest first
    pending = list(reversed(order))                                  # pop() takes the longest
    state = _empty_state(spec)
    occupant: list[int | None] = [None] * spec.rows
    results: list[Finished | None] = [None] * total
    done = tokens_out = 0
    while pending or any(o is not None for o in occupant):
        for row in range(spec.rows):
            if occupant[row] is None and pending:
                req = pending.pop()
                p = np.asarray(prompts[req], np.int32)
                padded = np.zeros((1, bucket_length(len(p))), np.int32)
                padded[0, :len(p)] = p
                state = _insert(weights, state, jnp.int32(row), jnp.asarray(padded), jnp.int32(len(p)),
                                keys[req], jnp.int32(limits[req]), spec=spec)
                occupant[row] = req
        # Attend only as far as the longest live row can reach in this chunk, rounded up to a
        # multiple of chunk_steps so few shapes compile (idle rows write slots nobody reads).
        reach = int(np.asarray(state["pos"])[[r for r in range(spec.rows) if occupant[r] is not None]].max())
        visible = min(spec.cache_len, -(-(reach + chunk_steps) // chunk_steps) * chunk_steps)
        steps = min(chunk_steps, visible - reach)
        state = _run(weights, state, jnp.asarray(bool(pending)), jnp.int32(steps), spec=spec,
                     visible=visible)
        active = np.asarray(state["active"])
        ended = [r for r in range(spec.rows) if occupant[r] is not None and not active[r]]
        if ended:
            gen = np.asarray(state["gen"])
            stopped = np.asarray(state["stopped"])
            idx = np.asarray(ended)
            width = int(gen[idx].max()) if len(idx) else 0
            toks = np.asarray(state["tokens"][idx, :width])
            lps = np.asarray(state["logprobs"][idx, :width])
            probs = np.asarray(state["probs"][idx, :width]) if spec.return_probs else None
            for k, r in enumerate(ended):
                n = int(gen[r])
                fin = Finished(request=occupant[r], token_ids=[int(t) for t in toks[k, :n]],
                               logprobs=[float(x) for x in lps[k, :n]], stopped=bool(stopped[r]),
                               probs=probs[k, :n].copy() if probs is not None else None)
                results[fin.request] = fin
                occupant[r] = None
                done += 1
                tokens_out += n
                if on_finish is not None:
                    on_finish(fin)
        if progress is not None:
            progress(done, total, tokens_out)
    return results  # type: ignore[return-value]


def make_progress_printer(label: str = "decoded") -> Callable[[int, int, int], None]:
    """A `progress` callback printing samples done, token rate and ETA at most every 5 s."""
    start = time.time()
    last = [0.0]

    def report(done: int, total: int, tokens: int) -> None:
        now = time.time()
        if now - last[0] < 5.0 and done < total:
            return
        last[0] = now
        elapsed = max(now - start, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else float("nan")
        print(f"{label} {done}/{total} samples, {tokens / elapsed:.1f} tokens/s "
              f"({rate:.2f} samples/s, ETA {eta:.0f}s)", flush=True)
    return report
