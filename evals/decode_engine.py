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

Each row has its own length and its own slots `0..len-1` in a `[B, KV_H, S, D]` cache; the forward is
the model's decode mode (`patch_training.model_decode`, over `model_decode.decode_weights`). Sample j
of prompt i uses key fold_in(fold_in(seed, i), j) folded with the token index, so a sample does not
depend on which rows it shared the device with.

Two ways to drive it. `run_engine` decodes a known list of requests to the end (the evals' batch
calls). `Engine` is the same loop held open: rows are submitted and cancelled between chunks, live rows
can be watched as they grow, and with `EngineSpec.sampling=None` every row carries its own sampling
settings and EOS rule, so requests with different settings decode in one batch (the server's use).
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import time
from typing import Any, Callable, Hashable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from evals import decode_mesh
from evals.sampling import SamplingConfig, sample_tokens, sample_tokens_per_row
from patch_training import model_decode

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class EngineSpec:
    """Everything static about one engine's compiled functions (hashable: a jit static argument)."""
    config: Any                      # patch_training.model.ModelConfig
    sampling: SamplingConfig | None  # None: per-row settings (Row.sampling, Row.stop_on_eos)
    rows: int                        # B
    cache_len: int                   # S
    max_new_tokens: int              # width of the per-row output buffers
    stop_tokens: tuple[int, ...]
    return_probs: bool
    compute_dtype: str
    cache_dtype: str
    return_mean: bool = False        # keep a [B, V] running sum of the raw softmax per row
    mean_includes_stop: bool = False  # ... over every step, the one that sampled a stop token included
    mesh: Any = None                 # a ("data",) Mesh: rows split over its devices (evals.decode_mesh)
    top_logprobs: int = 0            # also record each kept step's K most likely ids and their log-probs


@dataclasses.dataclass
class Finished:
    """One finished row as the host reads it back."""
    request: int
    token_ids: list[int]
    logprobs: list[float]
    stopped: bool
    probs: np.ndarray | None
    stop_token: int | None = None         # the stop token that ended the row (not in token_ids), when one did
    mean_dist: np.ndarray | None = None   # [V] fp32 when spec.return_mean and at least one step was summed
    top_ids: list[list[int]] | None = None          # [steps][K] when spec.top_logprobs, most likely first
    top_logprobs: list[list[float]] | None = None


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
        "stop_token": jnp.full((b,), -1, jnp.int32),
        "key": jax.random.split(jax.random.key(0), b),
        "tokens": jnp.zeros((b, n), jnp.int32),
        "logprobs": jnp.zeros((b, n), jnp.float32),
    }
    if spec.return_probs:
        state["probs"] = jnp.zeros((b, n, cfg.vocab_size), jnp.float32)
    if spec.top_logprobs:
        state["top_ids"] = jnp.zeros((b, n, spec.top_logprobs), jnp.int32)
        state["top_lps"] = jnp.zeros((b, n, spec.top_logprobs), jnp.float32)
    if spec.return_mean:
        state["dist_sum"] = jnp.zeros((b, cfg.vocab_size), jnp.float32)
        state["dist_steps"] = jnp.zeros((b,), jnp.int32)   # steps summed (kept tokens, + the stop step)
    if spec.sampling is None:
        state.update({name: jnp.zeros((b,), dtype) for name, dtype in _ROW_SETTINGS})
    return state


# Per-row sampling settings kept in the state when EngineSpec.sampling is None.
_ROW_SETTINGS = (("temperature", jnp.float32), ("top_k", jnp.int32), ("top_p", jnp.float32),
                 ("use_stop", jnp.bool_), ("record_top", jnp.bool_))


def _row_settings(rows: Sequence["Row"], pad: int) -> dict[str, Array]:
    """The [R] settings arrays of rows padded to R entries (padding rows are dropped by _arm)."""
    cols = {"temperature": [], "top_k": [], "top_p": [], "use_stop": [], "record_top": []}
    for row in list(rows) + [rows[0]] * pad:
        s = row.sampling or SamplingConfig()
        cols["temperature"].append(s.temperature)
        cols["top_k"].append(s.top_k)
        cols["top_p"].append(s.top_p)
        cols["use_stop"].append(row.stop_on_eos)
        cols["record_top"].append(row.record_top)
    return {name: jnp.asarray(cols[name], dtype) for name, dtype in _ROW_SETTINGS}


def _arm(state: dict[str, Any], rows: Array, length: Array, logits: Array, keys: Array,
         limits: Array, settings: dict[str, Array] | None, spec: EngineSpec) -> dict[str, Any]:
    """Start rows[R] (out-of-range entries are padding and dropped) at a prompt of `length` tokens
    whose last-token logits[V] are given; their cache slots are already written."""
    r = rows.shape[0]
    new = dict(state)
    wide = jnp.broadcast_to(logits, (r, logits.shape[-1]))
    for name, value in (("logits", wide), ("prompt_logits", wide),
                        ("pos", jnp.broadcast_to(length, (r,))), ("gen", jnp.zeros((r,), jnp.int32)),
                        ("limit", limits), ("active", jnp.ones((r,), bool)),
                        ("stopped", jnp.zeros((r,), bool)), ("stop_token", jnp.full((r,), -1, jnp.int32)),
                        ("key", keys)):
        new[name] = state[name].at[rows].set(value, mode="drop")
    if spec.return_mean:
        new["dist_sum"] = state["dist_sum"].at[rows].set(0.0, mode="drop")
        new["dist_steps"] = state["dist_steps"].at[rows].set(0, mode="drop")
    for name, value in (settings or {}).items():
        new[name] = state[name].at[rows].set(value, mode="drop")
    return new


@functools.partial(jax.jit, static_argnames=("spec",), donate_argnames=("state",))
def _insert(weights: Any, state: dict[str, Any], rows: Array, tokens: Array, length: Array, keys: Array,
            limits: Array, settings: dict[str, Array] | None, *, spec: EngineSpec) -> dict[str, Any]:
    """Prefill one right-padded prompt tokens[1, L] once and start it in every row of rows[R]
    (entries >= spec.rows are padding: R is fixed so one shape serves any group size)."""
    dtype = jnp.dtype(spec.compute_dtype)
    kv, logits = model_decode.prefill(weights, tokens, length[None], spec.config, dtype,
                                      jnp.dtype(spec.cache_dtype))
    width, r = tokens.shape[1], rows.shape[0]
    new = dict(state)
    new["cache"] = [(ck.at[rows, :, :width, :].set(jnp.broadcast_to(k[0], (r,) + k.shape[1:]), mode="drop"),
                     cv.at[rows, :, :width, :].set(jnp.broadcast_to(v[0], (r,) + v.shape[1:]), mode="drop"))
                    for (ck, cv), (k, v) in zip(state["cache"], kv)]
    return decode_mesh.constrain_rows(_arm(new, rows, length, logits[0], keys, limits, settings, spec), spec.mesh)


@functools.partial(jax.jit, static_argnames=("spec", "width"), donate_argnames=("state",))
def _copy(state: dict[str, Any], src: Array, rows: Array, length: Array, keys: Array, limits: Array,
          settings: dict[str, Array] | None, *, spec: EngineSpec, width: int) -> dict[str, Any]:
    """Start rows[R] at the prompt whose cache row `src` holds in slots [0, length) (width >= length,
    static): copy those slots and src's prompt logits instead of prefilling again. `src` may be one of
    `rows` (every read is of the old state)."""
    r = rows.shape[0]

    def spread(c: Array) -> Array:
        prompt = c[src, :, :width]                                   # [KV_H, width, D]
        return c.at[rows, :, :width, :].set(jnp.broadcast_to(prompt, (r,) + prompt.shape), mode="drop")

    new = dict(state)
    new["cache"] = [(spread(ck), spread(cv)) for ck, cv in state["cache"]]
    return decode_mesh.constrain_rows(_arm(new, rows, length, state["prompt_logits"][src], keys, limits, settings,
                                           spec), spec.mesh)


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
        if spec.sampling is None:
            token = sample_tokens_per_row(s["logits"], keys, s["temperature"], s["top_k"], s["top_p"])
        else:
            token = sample_tokens(s["logits"], keys, spec.sampling)
        log_probs = jax.nn.log_softmax(s["logits"], axis=-1)
        token_logprob = jnp.take_along_axis(log_probs, token[:, None], axis=-1)[:, 0]
        is_stop = jnp.any(token[:, None] == stop[None, :], axis=-1)
        if spec.sampling is None:
            is_stop = is_stop & s["use_stop"]
        keep = active & ~is_stop
        at = jnp.where(keep, s["gen"], n)                 # out of range = not written
        new = dict(s)
        new["tokens"] = s["tokens"].at[rows, at].set(token, mode="drop")
        new["logprobs"] = s["logprobs"].at[rows, at].set(token_logprob, mode="drop")
        if spec.top_logprobs:
            # The same raw log-softmax the chosen token's log-prob comes from (before temperature/top-k/p).
            # With per-row settings only rows that asked are recorded, and a step where none of the live
            # rows asked skips the top-k altogether (the server pays for it only while someone wants it).
            wanted = keep & s["record_top"] if spec.sampling is None else keep
            k = spec.top_logprobs

            def record(_):
                top_lps, top_ids = jax.lax.top_k(log_probs, k)
                put = jnp.where(wanted, s["gen"], n)
                return (s["top_ids"].at[rows, put].set(top_ids, mode="drop"),
                        s["top_lps"].at[rows, put].set(top_lps, mode="drop"))

            new["top_ids"], new["top_lps"] = jax.lax.cond(jnp.any(wanted), record,
                                                          lambda _: (s["top_ids"], s["top_lps"]), None)
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
        # Which stop token ended the row: OpenAI-style clients that score with echo read it as the last token.
        new["stop_token"] = jnp.where(active & is_stop, token, s["stop_token"])
        new["active"] = active & ~ended
        # Every row feeds its token (batched); rows that are idle write a slot nobody reads.
        new["cache"], new["logits"] = model_decode.step(weights, s["cache"], token, s["pos"],
                                                        spec.config, dtype, visible)
        new["pos"] = s["pos"] + keep.astype(jnp.int32)
        return new, i + 1, jnp.any(ended)

    final, _, _ = jax.lax.while_loop(cond, body, (state, jnp.zeros((), jnp.int32), jnp.zeros((), bool)))
    return decode_mesh.constrain_rows(final, spec.mesh)


def bucket_length(n: int) -> int:
    """Prompt lengths are padded to 16, 32, 64, ... so a few compiled prefill shapes serve all."""
    return max(16, 1 << (int(n) - 1).bit_length())


@dataclasses.dataclass(eq=False)
class Row:
    """One sample for an `Engine`: its prompt, PRNG key and token limit, and what the engine reports back.

    `sampling` and `stop_on_eos` apply when the engine's spec has per-row sampling (spec.sampling None).
    Rows with equal `group` (default: equal prompt tokens) share one prefill. `watch(row)` is called by the
    thread that steps the engine after every chunk in which the row is live, and once when it ends.
    """
    prompt: Sequence[int]
    key: Array
    limit: int
    sampling: SamplingConfig | None = None
    stop_on_eos: bool = True
    record_top: bool = False      # per-row engines with spec.top_logprobs: record this row's top-k per step
    group: Hashable | None = None
    watch: Callable[["Row"], None] | None = None
    tag: Any = None
    # Reported by the engine. Lists are replaced, never appended to, so another thread reads a whole snapshot.
    token_ids: list[int] = dataclasses.field(default_factory=list)
    logprobs: list[float] = dataclasses.field(default_factory=list)
    top_ids: list[list[int]] = dataclasses.field(default_factory=list)          # when spec.top_logprobs
    top_logprobs: list[list[float]] = dataclasses.field(default_factory=list)
    result: Finished | None = None
    done: bool = False
    cancelled: bool = False


class Engine:
    """The continuous-batching loop held open: `submit` rows and `cancel` them between `step`s.

    Not thread-safe except `cancel`, which only raises a flag the next `step` acts on: one thread (the
    server's scheduler, or `run_engine`) owns the engine and steps it. Waiting rows are placed in the
    order submitted; a cancelled row leaves at the next step, whether it was waiting or decoding.
    """

    def __init__(self, weights: Any, spec: EngineSpec, *, chunk_steps: int = 256, share_prefill: bool = True,
                 stats: dict[str, int] | None = None):
        if spec.rows % decode_mesh.device_count(spec.mesh):
            raise ValueError(f"{spec.rows} engine rows do not split over {decode_mesh.device_count(spec.mesh)} "
                             "devices: round them with decode_mesh.round_rows")
        # Replicating weights that are already replicated on this mesh is free (no copy).
        self.weights = decode_mesh.replicate(weights, spec.mesh)
        self.spec = spec
        self.chunk_steps = int(chunk_steps)
        self.share_prefill = share_prefill
        # Attention widths are multiples of this, so few loop shapes compile however small the chunks are.
        self.visible_quantum = max(self.chunk_steps, 128)
        self.state = decode_mesh.shard_rows(_empty_state(spec), spec.mesh)
        self.pending: collections.deque[Row] = collections.deque()
        self.occupant: list[Row | None] = [None] * spec.rows
        self.holds: list[Hashable | None] = [None] * spec.rows   # group whose prompt sits in the row's first slots
        self.stats = stats if stats is not None else {}
        for name in ("prefills", "copies", "chunks"):
            self.stats.setdefault(name, 0)

    @property
    def live(self) -> int:
        return sum(o is not None for o in self.occupant)

    @property
    def waiting(self) -> int:
        return len(self.pending)

    @property
    def busy(self) -> bool:
        return bool(self.pending) or self.live > 0

    def submit(self, row: Row) -> None:
        if row.group is None:
            row.group = tuple(int(t) for t in row.prompt) if self.share_prefill else ("row", id(row))
        self.pending.append(row)

    @staticmethod
    def cancel(row: Row) -> None:
        row.cancelled = True

    def _drop_cancelled(self) -> None:
        dropped = [r for r in self.pending if r.cancelled]   # one snapshot: another thread may cancel meanwhile
        if dropped:
            for r in dropped:
                r.done = True
            self.stats["cancelled"] = self.stats.get("cancelled", 0) + len(dropped)
            self.pending = collections.deque(r for r in self.pending if not r.done)
        gone = [i for i, r in enumerate(self.occupant) if r is not None and r.cancelled]
        if gone:
            # The row stops decoding now; its prompt slots stay intact, so it can still be a copy source.
            active = self.state["active"].at[jnp.asarray(gone)].set(False)
            self.state["active"] = decode_mesh.shard_rows(active, self.spec.mesh)   # keep the engine's layout
            for i in gone:
                self.occupant[i].done = True
                self.occupant[i] = None
            self.stats["cancelled"] = self.stats.get("cancelled", 0) + len(gone)

    def _place(self) -> None:
        spec = self.spec
        free = [r for r in range(spec.rows) if self.occupant[r] is None]
        while free and self.pending:
            g = self.pending[0].group
            take: list[Row] = []
            while self.pending and self.pending[0].group == g and len(take) < len(free):
                take.append(self.pending.popleft())
            # Prefer free rows that already hold this prompt; any row holding it can be the source.
            dst = sorted(free, key=lambda r: self.holds[r] != g)[:len(take)]
            free = [r for r in free if r not in dst]
            src = next((r for r in range(spec.rows) if self.holds[r] == g), None)
            for r, row in zip(dst, take):
                self.occupant[r] = row
            pad = spec.rows - len(dst)
            idx = jnp.asarray(dst + [spec.rows] * pad, jnp.int32)   # padding index spec.rows: dropped
            ks = jnp.stack([row.key for row in take] + [take[0].key] * pad)
            lim = jnp.asarray([row.limit for row in take] + [0] * pad, jnp.int32)
            settings = _row_settings(take, pad) if spec.sampling is None else None
            p = np.asarray(take[0].prompt, np.int32)
            width = min(bucket_length(len(p)), spec.cache_len)
            if src is None:
                padded = np.zeros((1, width), np.int32)
                padded[0, :len(p)] = p
                self.state = _insert(self.weights, self.state, idx, jnp.asarray(padded), jnp.int32(len(p)), ks,
                                     lim, settings, spec=spec)
                self.stats["prefills"] += 1
            else:
                self.state = _copy(self.state, jnp.int32(src), idx, jnp.int32(len(p)), ks, lim, settings,
                                   spec=spec, width=width)
                self.stats["copies"] += 1
            for r in dst:
                self.holds[r] = g

    def step(self) -> list[Row]:
        """Act on cancellations, fill free rows from the waiting ones, decode one chunk; the rows that ended."""
        spec = self.spec
        self._drop_cancelled()
        self._place()
        live = [r for r in range(spec.rows) if self.occupant[r] is not None]
        if not live:
            return []
        # Attend only as far as the longest live row can reach in this chunk, rounded up to the quantum
        # so few shapes compile (idle rows write slots nobody reads).
        reach = int(np.asarray(self.state["pos"])[live].max())
        q = self.visible_quantum
        visible = min(spec.cache_len, -(-(reach + self.chunk_steps) // q) * q)
        steps = min(self.chunk_steps, visible - reach)
        self.state = _run(self.weights, self.state, jnp.asarray(bool(self.pending)), jnp.int32(steps), spec=spec,
                          visible=visible)
        self.stats["chunks"] += 1
        active = np.asarray(self.state["active"])
        gen = np.asarray(self.state["gen"])
        ended = [r for r in live if not active[r]]
        watched = [r for r in live if active[r] and self.occupant[r].watch is not None]
        finished: list[Row] = []
        if ended:
            stopped = np.asarray(self.state["stopped"])
            stop_tokens = np.asarray(self.state["stop_token"])
            idx = np.asarray(ended)
            width = int(gen[idx].max())
            toks = np.asarray(self.state["tokens"][idx, :width])
            lps = np.asarray(self.state["logprobs"][idx, :width])
            probs = np.asarray(self.state["probs"][idx, :width]) if spec.return_probs else None
            sums = np.asarray(self.state["dist_sum"][idx]) if spec.return_mean else None
            counts = np.asarray(self.state["dist_steps"][idx]) if spec.return_mean else None
            tops = self._tops(idx, width)
            for k, r in enumerate(ended):
                row, n = self.occupant[r], int(gen[r])
                row.result = Finished(request=row.tag, token_ids=[int(t) for t in toks[k, :n]],
                                      logprobs=[float(x) for x in lps[k, :n]], stopped=bool(stopped[r]),
                                      stop_token=int(stop_tokens[r]) if stopped[r] else None,
                                      probs=probs[k, :n].copy() if probs is not None else None,
                                      mean_dist=(sums[k] / counts[k]).astype(np.float32)
                                      if sums is not None and counts[k] else None,
                                      top_ids=tops[0][k, :n].tolist() if tops else None,
                                      top_logprobs=tops[1][k, :n].tolist() if tops else None)
                row.top_ids, row.top_logprobs = row.result.top_ids, row.result.top_logprobs
                row.token_ids, row.logprobs, row.done = row.result.token_ids, row.result.logprobs, True
                self.occupant[r] = None
                finished.append(row)
        if watched:
            idx = np.asarray(watched)
            width = int(gen[idx].max())
            toks = np.asarray(self.state["tokens"][idx, :width])
            lps = np.asarray(self.state["logprobs"][idx, :width])
            tops = self._tops(idx, width)
            for k, r in enumerate(watched):
                row, n = self.occupant[r], int(gen[r])
                if tops:   # before the tokens: a reader that sees n tokens finds at least n top-k entries
                    row.top_ids, row.top_logprobs = tops[0][k, :n].tolist(), tops[1][k, :n].tolist()
                row.token_ids, row.logprobs = [int(t) for t in toks[k, :n]], [float(x) for x in lps[k, :n]]
                row.watch(row)
        for row in finished:
            if row.watch is not None:
                row.watch(row)
        return finished

    def _tops(self, idx: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.spec.top_logprobs:
            return None
        return np.asarray(self.state["top_ids"][idx, :width]), np.asarray(self.state["top_lps"][idx, :width])

    def live_tokens(self) -> int:
        """Tokens generated so far by the rows still decoding."""
        gen = np.asarray(self.state["gen"])
        return sum(int(gen[r]) for r in range(self.spec.rows) if self.occupant[r] is not None)


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
    engine = Engine(weights, spec, chunk_steps=chunk_steps, share_prefill=share_prefill, stats=stats)
    # Group id = the first request with the same tokens (or the request itself without sharing).
    first: dict[tuple[int, ...], int] = {}
    group = [first.setdefault(tuple(int(t) for t in p), r) if share_prefill else r
             for r, p in enumerate(prompts)]
    # Longest first; a group's requests next to each other so they are placed together.
    for r in sorted(range(total), key=lambda r: (-len(prompts[r]), group[r], r)):
        engine.submit(Row(prompt=prompts[r], key=keys[r], limit=int(limits[r]), group=group[r], tag=r))
    results: list[Finished | None] = [None] * total
    done = tokens_out = 0
    while engine.busy:
        for row in engine.step():
            results[row.tag] = row.result
            done += 1
            tokens_out += len(row.result.token_ids)
            if on_finish is not None:
                on_finish(row.result)
        if progress is not None:
            # Count the tokens of rows still decoding too: with long rows nothing may finish for minutes.
            progress(done, total, tokens_out + engine.live_tokens())
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
