"""The in-process backend: our checkpoints and HF imports through `evals.decoding.Decoder`.

Generation goes through the decoding engine (continuous batching, KV cache): every prompt of a call
in one engine run, the n samples of a prompt sharing its prefill, each prompt seeded by its own
identity so a sample does not depend on which prompts share the call.

`mean_dist` (Sampling.return_dist) comes from the engine's on-device running sum of the raw softmax
over the generated steps ([B, V] on the device, one [V] vector per sample on the host). Stop strings
that are exactly one token (the byte vocabulary's "\n") become stop tokens inside the loop; a sample
that another stop string cuts on the host has fewer steps than the engine averaged, so its mean is
recomputed by the scoring pass below.

One jitted teacher-forced scoring pass over prompt + completion serves that fallback,
`loglikelihood` (with whether each continuation is the greedy one: `score_continuations`, what
lm-evaluation-harness asks), and the server's prompt/top-k log-probs. It is the sampler's own forward
(`model_decode.score_logits`, the prefill's forward at every position) over the decoder's weights, in
its compute and cache dtypes: a sample and its score come from the same code and numerics.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from evals import decode_mesh
from evals.backends.text_vocab import TextVocab, open_text_vocab
from evals.model_api import Completion, Sampling, chat_parts, fingerprint_of
from patch_training import model_decode
from patch_training.contract.checkpoint import Checkpoint, params_fingerprint
from patch_training.errors import UserError

log = logging.getLogger(__name__)


def _bucket(n: int, multiple: int = 32) -> int:
    return max(multiple, -(-n // multiple) * multiple)


@functools.partial(jax.jit, static_argnames=("config", "dtype", "cache_dtype", "top_k"))
def _score(weights: Any, tokens: jax.Array, lengths: jax.Array, start: jax.Array, *, config: Any, dtype: str,
           cache_dtype: str, top_k: int):
    """Right-padded tokens[B, L] -> log p(token_t | prefix) for t >= 1, top-k alternatives at each
    position, and the mean softmax over the positions that predict tokens[start:length]. `weights` are
    the decode mode's (`Decoder.engine_weights`); padding sits after each row's tokens, so causality
    keeps it out of every position read back."""
    batch, length = tokens.shape
    slot = jnp.arange(length)[None, :]
    logits = model_decode.score_logits(weights, tokens, config, dtype, cache_dtype)
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)          # [B, L, V]; position t predicts t+1
    nxt = jnp.concatenate([tokens[:, 1:], jnp.zeros((batch, 1), tokens.dtype)], axis=1)
    chosen = jnp.take_along_axis(logp, nxt[:, :, None], axis=-1)[..., 0]   # [B, L]: log p(tokens[t+1])
    predicts = (slot + 1 >= start[:, None]) & (slot + 1 < lengths[:, None])
    weight = predicts.astype(jnp.float32)
    mean = jnp.einsum("bl,blv->bv", weight, jnp.exp(logp)) / jnp.maximum(weight.sum(1), 1.0)[:, None]
    top_lp, top_ids = jax.lax.top_k(logp, max(top_k, 1))
    return chosen, top_lp, top_ids, mean


class JaxModel:
    """`LanguageModel` over params in this process."""

    def __init__(self, config: Any, params: Any, vocab: TextVocab, *, batch_size: int = 8,
                 fingerprint: str | None = None, name: str = "jax", decode_dtype: str | None = None,
                 devices: int | str = "all"):
        from evals.decoding import DECODE_DTYPES, Decoder

        if decode_dtype is not None and decode_dtype not in DECODE_DTYPES:
            raise UserError(f"decode dtype {decode_dtype!r}: expected one of {', '.join(DECODE_DTYPES)}")
        self.config = config
        self.params = params
        self.vocab = vocab
        self.batch_size = batch_size
        self.name = name
        self.decoder = Decoder(config, params, vocab, batch_size=batch_size, compute_dtype=decode_dtype,
                               devices=devices)
        # Scoring runs the decoder's own forward over its weights (made once, replicated over the same
        # devices), in its compute and cache dtypes, with its rows split over the same devices.
        self.mesh = self.decoder.mesh
        self.progress = False   # log decoding progress inside each call (the eval CLIs turn it on)
        self._stop_token_cache: dict[tuple[str, ...], tuple[int, ...]] = {}
        parts = ["jax", config.to_json(), params_fingerprint(params), vocab.fingerprint]
        if decode_dtype is not None and decode_dtype != config.dtype:
            parts.append(f"decode_dtype={decode_dtype}")   # other numerics, other samples: not the same cache entries
        self._fingerprint = fingerprint or fingerprint_of(*parts)
        if vocab.vocab_size > config.vocab_size:
            log.warning("%s: tokenizer has %d ids but the model only %d", name, vocab.vocab_size, config.vocab_size)

    @property
    def fingerprint(self) -> str:
        return self._fingerprint

    # ------------------------------------------------------------------ prompts
    def prompt_ids(self, prompt: str, chat: bool) -> list[int]:
        if chat:
            # A LeadPrompt's lead opens the assistant turn (the template's opener, then the lead's text), so a
            # chat model continues the answer the way a completion model does.
            user, prefix = chat_parts(prompt)
            ids = self.vocab.encode_chat([{"role": "user", "content": user}], assistant_prefix=prefix)
        else:
            ids = self.vocab.encode_prompt(prompt)
        return ids or self.vocab.start_ids()

    def stop_ids(self) -> tuple[int, ...]:
        return self.vocab.eos_ids

    def stop_string_tokens(self, stops: Sequence[str]) -> tuple[int, ...]:
        """Token ids whose text is exactly one of the stop strings: stopping on them in the loop gives
        the same completion as cutting the text afterwards (the token is the stop text, which is not
        kept), and no steps past it are decoded or averaged."""
        key = tuple(stops)
        if key not in self._stop_token_cache:
            found = []
            for s in stops:
                ids = self.vocab.encode(s) if s else []
                if len(ids) == 1 and self.vocab.decode(ids) == s and 0 <= ids[0] < self.config.vocab_size:
                    found.append(int(ids[0]))
            self._stop_token_cache[key] = tuple(sorted(set(found)))
        return self._stop_token_cache[key]

    # ------------------------------------------------------------------ generate
    def generate(self, prompts: Sequence[str], n: int, sampling: Sampling) -> list[list[Completion]]:
        return self.generate_ids([self.prompt_ids(p, sampling.chat) for p in prompts], n, sampling,
                                 seeds=[_prompt_seed(sampling.seed, p) for p in prompts])

    def generate_ids(self, prompts: Sequence[list[int]], n: int, sampling: Sampling,
                     seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        """Token-id prompts -> completions. Sample j of prompt i is seeded by (seeds[i], j), so it does not
        depend on which prompts share the call (greedy is batched across prompts; sampling per prompt)."""
        from evals.sampling import SamplingConfig

        cfg = SamplingConfig(sampling.temperature, sampling.top_k, sampling.top_p)
        stops = tuple(sorted(set(self.stop_ids()) | set(self.stop_string_tokens(sampling.stop))))
        kw = dict(max_new_tokens=sampling.max_new_tokens, sampling=cfg, num_samples=n,
                  stop_tokens=stops, return_mean_dist=sampling.return_dist,
                  mean_includes_stop=sampling.return_dist and sampling.dist_includes_stop,
                  progress=_progress_logger() if self.progress else False)
        if cfg.greedy:
            raw = self.decoder.generate(list(prompts), seed=0, **kw)
        else:
            # One engine run for all prompts; prompt i keeps the keys it would get alone (seed=seeds[i]).
            seeds = seeds if seeds is not None else [_ids_seed(sampling.seed, p) for p in prompts]
            raw = self.decoder.generate(list(prompts), seeds=list(seeds), **kw)
        out = []
        rescore: list[tuple[list[int], Completion, list[int]]] = []   # cut by a stop string on the host
        for ids, samples in zip(prompts, raw):
            row = []
            for s in samples:
                c = self._completion(s.token_ids, s.logprobs, s.finish_reason, sampling)
                if sampling.return_dist:
                    if len(c.token_ids) == len(s.token_ids):
                        c.mean_dist = s.mean_dist
                    elif sampling.dist_includes_stop:
                        # the step that produced the stop text's first token is the stop step: score it too
                        rescore.append((list(ids), c, list(s.token_ids[:len(c.token_ids) + 1])))
                    elif c.token_ids:
                        rescore.append((list(ids), c, list(c.token_ids)))
                row.append(c)
            out.append(row)
        if rescore:
            dists = self.mean_dists([p for p, _, _ in rescore], [steps for _, _, steps in rescore])
            for (_, c, _), d in zip(rescore, dists):
                c.mean_dist = d
        return out

    def _completion(self, ids: list[int], logprobs: list[float], finish: str, sampling: Sampling) -> Completion:
        text = self.vocab.decode(ids)
        cut = _first_stop(text, sampling.stop)
        if cut is not None:  # a stop string the loop could not stop on: cut here (the tokens up to it)
            keep = _tokens_covering(self.vocab, ids, cut)
            ids, logprobs, finish = ids[:keep], logprobs[:keep], "stop"
            text = text[:cut]
        return Completion(text=text, token_ids=list(ids), token_logprobs=list(logprobs), finish_reason=finish)

    # ------------------------------------------------------------------ scoring
    def score(self, rows: Sequence[list[int]], starts: Sequence[int], top_k: int = 0):
        """For each id row: (log p of rows[t] for t in [start, len)), the argmax id at each of those
        positions, (top-k ids, log-probs) there, and the mean softmax over them. `batch_size` rows
        per jitted call, right-padded."""
        results = []
        for b0 in range(0, len(rows), self.batch_size):
            chunk = [list(r) for r in rows[b0:b0 + self.batch_size]]
            st = list(starts[b0:b0 + self.batch_size])
            size = decode_mesh.round_rows(1 << (len(chunk) - 1).bit_length(), self.mesh)
            length = _bucket(max(map(len, chunk)))
            tokens = np.zeros((size, length), np.int32)
            lengths = np.zeros((size,), np.int32)
            start = np.ones((size,), np.int32)
            for i, (r, s) in enumerate(zip(chunk, st)):
                tokens[i, :len(r)] = r
                lengths[i] = len(r)
                start[i] = max(1, s)
            batch = decode_mesh.shard_rows((tokens, lengths, start), self.mesh)
            chosen, top_lp, top_ids, mean = jax.device_get(_score(
                self.decoder.engine_weights(), *map(jnp.asarray, batch), config=self.config,
                dtype=self.decoder.compute_dtype, cache_dtype=self.decoder.cache_dtype, top_k=int(top_k)))
            for i, (r, s) in enumerate(zip(chunk, st)):
                s = max(1, s)
                pos = slice(s - 1, len(r) - 1)   # position t-1 predicts token t
                results.append({"logprobs": [float(x) for x in chosen[i, pos]],
                                "argmax": top_ids[i, pos, 0].tolist(),   # top_k's first: lowest id on a tie
                                "top_ids": top_ids[i, pos, :top_k].tolist() if top_k else None,
                                "top_logprobs": top_lp[i, pos, :top_k].tolist() if top_k else None,
                                "mean": np.asarray(mean[i], np.float32)})
        return results

    def mean_dists(self, prompts: list[list[int]], completions: list[list[int]]) -> list[np.ndarray | None]:
        rows = [p + c for p, c in zip(prompts, completions)]
        scored = self.score(rows, [len(p) for p in prompts])
        return [s["mean"] if c else None for s, c in zip(scored, completions)]

    def loglikelihood(self, requests: Sequence[tuple[str, str]]) -> list[float]:
        return [lp for lp, _ in self.score_continuations([self.split_ids(c, x) for c, x in requests])]

    def score_continuations(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """(context ids, continuation ids) -> (sum of log p(continuation | context), whether greedy
        decoding from the context would produce exactly the continuation), in the order given."""
        scored = self.score([list(c) + list(x) for c, x in pairs], [len(c) for c, _ in pairs])
        return [(float(sum(s["logprobs"])), s["argmax"] == list(x)) for s, (_, x) in zip(scored, pairs)]

    def split_ids(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """Context and continuation ids as the model reads them together: encode the whole, then cut at
        the context's length when it is a prefix (a tokenizer may merge across the boundary)."""
        ctx = self.vocab.encode_prompt(context) if context else self.vocab.start_ids()
        whole = self.vocab.encode_prompt(context + continuation) if context else ctx + self.vocab.encode(continuation)
        if whole[:len(ctx)] == ctx:
            return ctx, whole[len(ctx):]
        return ctx, self.vocab.encode(continuation)


def _progress_logger(every_s: float = 10.0):
    """The decoding engine's progress callback as a log line at most every `every_s` seconds: a long batch
    (thousands of tokens per row on CPU) shows its rate long before it ends."""
    import time

    start, last = time.monotonic(), [time.monotonic()]

    def report(done: int, total: int, tokens: int) -> None:
        now = time.monotonic()
        if now - last[0] < every_s or done >= total:
            return
        last[0] = now
        log.info("decoding this batch: %d/%d samples done, %d tokens, %.1f tokens/s", done, total, tokens,
                 tokens / max(now - start, 1e-9))
    return report


def _prompt_seed(seed: int, prompt: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{prompt}".encode()).digest()[:4], "little") & 0x7FFFFFFF


def _ids_seed(seed: int, ids: Sequence[int]) -> int:
    return _prompt_seed(seed, json.dumps(list(map(int, ids))))


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    hits = [text.find(s) for s in stops if s and s in text]
    return min(hits) if hits else None


def _tokens_covering(vocab: TextVocab, ids: list[int], chars: int) -> int:
    """How many leading tokens decode to at most `chars` characters (kept before a stop string)."""
    for k in range(len(ids) + 1):
        if len(vocab.decode(ids[:k])) > chars:
            return max(0, k - 1)
    return len(ids)


def load_jax_model(*, checkpoint: str | None = None, hf_dir: str | None = None, batch_size: int = 8,
                   add_bos: bool | None = None, decode_dtype: str | None = None) -> JaxModel:
    """A JaxModel from a params checkpoint / trainer run dir, or from an HF LLaMA directory, opened through
    `Checkpoint.open` (which reads vocab.json once). The tokenizer is opened before the weights are read,
    so a model that cannot read text fails fast."""
    ckpt = Checkpoint.open(checkpoint or hf_dir, params=False, hf=not checkpoint)
    if ckpt.vocab_spec is None and ckpt.layout == "hf":
        raise UserError(f"{ckpt.path}: no tokenizer.json or tokenizer.model: the model cannot read text")
    if ckpt.vocab_spec is None:
        raise UserError(f"checkpoint {ckpt.path} has no vocab.json: it carries no tokenizer, so text prompts "
                        "cannot be encoded")
    # Our pretraining packs text without BOS; an HF tokenizer config says for itself.
    vocab = open_text_vocab(ckpt.vocab_spec, add_bos=add_bos, default_add_bos=ckpt.layout == "hf",
                            name=str(checkpoint or hf_dir))
    ckpt = ckpt.with_params()
    return JaxModel(ckpt.config, ckpt.params, vocab, batch_size=batch_size, name=str(checkpoint or hf_dir),
                    decode_dtype=decode_dtype)
