"""Continuous-batching decode engine: a fixed set of B rows, each refilled with a new prompt as soon
as its completion ends, so short completions never wait for the longest one in their batch.

Host/device split: the device runs a jitted loop of up to `chunk_steps` decode steps over all rows
(sampling, stop tokens, per-row length limits, recording) and returns early when a row finishes
while prompts are still waiting. The host then reads the finished rows out and fills the free rows
with waiting requests. Waiting prompts are taken longest first, which groups similar lengths.

Shared prefill: requests with the same prompt tokens (the n samples of one prompt) form a group. A
group's prompt is prefilled once, into as many free rows as it needs in one jitted call (prompt length
bucketed so a few compiled shapes serve every prompt). Samples that find no free row wait; when they
are placed later and some row still holds that prompt's cache slots (a live sibling, or a finished row
not yet reused), its prompt slots and last prompt logits are copied instead of prefilling again. The
prompt's slots stay intact while a row decodes (generated tokens go to slots >= the prompt length).

Full-vocabulary mean (`return_mean`): each row keeps a `[V]` running sum of the softmax of the raw
logits over its kept steps, so the mean distribution per sample costs `[B, V]` on the device instead of
a `[B, max_new, V]` per-step buffer (`return_probs`, kept for tests and small uses). With
`mean_includes_stop` the step that sampled a stop token (EOS) is summed and counted too: the official
DynamicQA code averages the softmax over every generated step, the EOS step included.

Each row has its own length and its own slots `0..len-1` in a `[B, KV_H, S, D]` cache (see
`evals.decode_forward`), and sample j of prompt i uses key fold_in(fold_in(seed, i), j) folded with
the token index, so a sample does not depend on which rows it shared the device with.
"""
from __future__ import annotations

import collections
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
    return_mean: bool = False        # keep a [B, V] running sum of the raw softmax per row
    mean_includes_stop: bool = False  # ... over every step, the one that sampled a stop token included


@dataclasses.dataclass
class Finished:
    """One finished row as the host reads it back."""
    request: int
    token_ids: list[int]
    logprobs: list[float]
    stopped: bool
    probs: np.ndarray | None
    mean_dist: np.ndarray | None = None   # [V] fp32 when spec.return_mean and at least one step was summed


def _empty_state(spec: EngineSpec) -> dict[str, Any]:
    cfg = spec.config
    b, s, n = spec.rows, spec.cache_len, spec.max_new_tokens
    shape = (b, cfg.num_kv_heads, s, cfg.resolved_head_dim)
    cache_dtype = jnp.dtype(spec.cache_dtype)
    state = {
        "cache": [(jnp.zeros(shape, cache_dtype), jnp.zeros(shape, cache_dtype))
                  for _ in range(cfg.num_layers)],
        "logits": jnp.zeros((b, cfg.vocab_size), jnp.float32),
        # Logits at the prompt's last token, kept so a sibling sample can start from this row's cache.
        "prompt_logits": jnp.zeros((b, cfg.vocab_size), jnp.float32),
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
    if spec.return_mean:
        state["dist_sum"] = jnp.zeros((b, cfg.vocab_size), jnp.float32)
        state["dist_steps"] = jnp.zeros((b,), jnp.int32)   # steps summed (kept tokens, + the stop step)
    return state


def _arm(state: dict[str, Any], rows: Array, length: Array, logits: Array, keys: Array,
         limits: Array, spec: EngineSpec) -> dict[str, Any]:
    """Start rows[R] (out-of-range entries are padding and dropped) at a prompt of `length` tokens
    whose last-token logits[V] are given; their cache slots are already written."""
    r = rows.shape[0]
    new = dict(state)
    wide = jnp.broadcast_to(logits, (r, logits.shape[-1]))
    for name, value in (("logits", wide), ("prompt_logits", wide),
                        ("pos", jnp.broadcast_to(length, (r,))), ("gen", jnp.zeros((r,), jnp.int32)),
                        ("limit", limits), ("active", jnp.ones((r,), bool)),
                        ("stopped", jnp.zeros((r,), bool)), ("key", keys)):
        new[name] = state[name].at[rows].set(value, mode="drop")
    if spec.return_mean:
        new["dist_sum"] = state["dist_sum"].at[rows].set(0.0, mode="drop")
        new["dist_steps"] = state["dist_steps"].at[rows].set(0, mode="drop")
    return new


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnames=("state",))
def _insert(weights: Any, state: dict[str, Any], rows: Array, tokens: Array, length: Array, keys: Array,
            limits: Array, *, spec: EngineSpec) -> dict[str, Any]:
    """Prefill one right-padded prompt tokens[1, L] once and start it in every row of rows[R]
    (entries >= spec.rows are padding: R is fixed so one shape serves any group size)."""
    dtype = jnp.dtype(spec.compute_dtype)
    kv, logits = decode_forward.prefill(weights, tokens, length[None], spec.config, dtype,
                                        jnp.dtype(spec.cache_dtype))
    width, r = tokens.shape[1], rows.shape[0]
    new = dict(state)
    new["cache"] = [(ck.at[rows, :, :width, :].set(jnp.broadcast_to(k[0], (r,) + k.shape[1:]), mode="drop"),
                     cv.at[rows, :, :width, :].set(jnp.broadcast_to(v[0], (r,) + v.shape[1:]), mode="drop"))
                    for (ck, cv), (k, v) in zip(state["cache"], kv)]
    return _arm(new, rows, length, logits[0], keys, limits, spec)


@functools.partial(jax.jit, static_argnames=("spec", "width"), donate_argnames=("state",))
def _copy(state: dict[str, Any], src: Array, rows: Array, length: Array, keys: Array, limits: Array, *,
          spec: EngineSpec, width: int) -> dict[str, Any]:
    """Start rows[R] at the prompt whose cache row `src` holds in slots [0, length) (width >= length,
    static): copy those slots and src's prompt logits instead of prefilling again. `src` may be one of
    `rows` (every read is of the old state)."""
    r = rows.shape[0]

    def spread(c: Array) -> Array:
        prompt = c[src, :, :width]                                   # [KV_H, width, D]
        return c.at[rows, :, :width, :].set(jnp.broadcast_to(prompt, (r,) + prompt.shape), mode="drop")

    new = dict(state)
    new["cache"] = [(spread(ck), spread(cv)) for ck, cv in state["cache"]]
    return _arm(new, rows, length, state["prompt_logits"][src], keys, limits, spec)


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
        if spec.return_probs or spec.return_mean:
            probs = jnp.exp(log_probs)
        if spec.return_probs:
            new["probs"] = s["probs"].at[rows, at].set(probs, mode="drop")
        if spec.return_mean:
            summed = active if spec.mean_includes_stop else keep
            new["dist_sum"] = s["dist_sum"] + jnp.where(summed[:, None], probs, 0.0)
            new["dist_steps"] = s["dist_steps"] + summed.astype(jnp.int32)
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
               limits: Sequence[int], *, chunk_steps: int = 256, share_prefill: bool = True,
               on_finish: Callable[[Finished], None] | None = None,
               progress: Callable[[int, int, int], None] | None = None,
               stats: dict[str, int] | None = None) -> list[Finished]:
    """Decode every request (prompt, key, limit); results in request order.

    With `share_prefill`, requests whose prompt tokens are equal share one prefill (see the module
    docstring); a request's tokens do not depend on it. `progress(done, total, tokens)` is called after
    each return to the host; `stats`, when given, receives counts of prefills, copies and chunks.
    """
    total = len(prompts)
    # Group id = the first request with the same tokens (or the request itself without sharing).
    first: dict[tuple[int, ...], int] = {}
    group = [first.setdefault(tuple(int(t) for t in p), r) if share_prefill else r
             for r, p in enumerate(prompts)]
    # Longest first; a group's requests next to each other so they are placed together.
    pending = collections.deque(sorted(range(total), key=lambda r: (-len(prompts[r]), group[r], r)))
    state = _empty_state(spec)
    occupant: list[int | None] = [None] * spec.rows
    holds: list[int | None] = [None] * spec.rows      # group whose prompt sits in the row's first slots
    results: list[Finished | None] = [None] * total
    done = tokens_out = 0
    counts = stats if stats is not None else {}
    for name in ("prefills", "copies", "chunks"):
        counts.setdefault(name, 0)

    def padded_rows(rows: list[int]) -> tuple[Array, Array, Array]:
        """rows, their keys and limits padded to spec.rows entries (padding index spec.rows: dropped)."""
        reqs = [occupant[r] for r in rows]
        pad = spec.rows - len(rows)
        idx = jnp.asarray(rows + [spec.rows] * pad, jnp.int32)
        ks = jnp.stack([keys[q] for q in reqs] + [keys[reqs[0]]] * pad)
        lim = jnp.asarray([limits[q] for q in reqs] + [0] * pad, jnp.int32)
        return idx, ks, lim

    while pending or any(o is not None for o in occupant):
        free = [r for r in range(spec.rows) if occupant[r] is None]
        while free and pending:
            g = group[pending[0]]
            take = []
            while pending and group[pending[0]] == g and len(take) < len(free):
                take.append(pending.popleft())
            # Prefer free rows that already hold this prompt; any row holding it can be the source.
            dst = sorted(free, key=lambda r: holds[r] != g)[:len(take)]
            free = [r for r in free if r not in dst]
            src = next((r for r in range(spec.rows) if holds[r] == g), None)
            for r, q in zip(dst, take):
                occupant[r] = q
            idx, ks, lim = padded_rows(dst)
            p = np.asarray(prompts[g], np.int32)
            width = min(bucket_length(len(p)), spec.cache_len)
            if src is None:
                padded = np.zeros((1, width), np.int32)
                padded[0, :len(p)] = p
                state = _insert(weights, state, idx, jnp.asarray(padded), jnp.int32(len(p)), ks, lim,
                                spec=spec)
                counts["prefills"] += 1
            else:
                state = _copy(state, jnp.int32(src), idx, jnp.int32(len(p)), ks, lim, spec=spec,
                              width=width)
                counts["copies"] += 1
            for r in dst:
                holds[r] = g
        # Attend only as far as the longest live row can reach in this chunk, rounded up to a
        # multiple of chunk_steps so few shapes compile (idle rows write slots nobody reads).
        reach = int(np.asarray(state["pos"])[[r for r in range(spec.rows) if occupant[r] is not None]].max())
        visible = min(spec.cache_len, -(-(reach + chunk_steps) // chunk_steps) * chunk_steps)
        steps = min(chunk_steps, visible - reach)
        state = _run(weights, state, jnp.asarray(bool(pending)), jnp.int32(steps), spec=spec,
                     visible=visible)
        counts["chunks"] += 1
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
            sums = np.asarray(state["dist_sum"][idx]) if spec.return_mean else None
            steps = np.asarray(state["dist_steps"][idx]) if spec.return_mean else None
            for k, r in enumerate(ended):
                n = int(gen[r])
                fin = Finished(request=occupant[r], token_ids=[int(t) for t in toks[k, :n]],
                               logprobs=[float(x) for x in lps[k, :n]], stopped=bool(stopped[r]),
                               probs=probs[k, :n].copy() if probs is not None else None,
                               mean_dist=(sums[k] / steps[k]).astype(np.float32)
                               if sums is not None and steps[k] else None)
                results[fin.request] = fin
                occupant[r] = None
                done += 1
                tokens_out += n
                if on_finish is not None:
                    on_finish(fin)
        if progress is not None:
            # Count the tokens of rows still decoding too: with long rows nothing may finish for minutes.
            gen_now = np.asarray(state["gen"])
            live = sum(int(gen_now[r]) for r in range(spec.rows) if occupant[r] is not None)
            progress(done, total, tokens_out + live)
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
