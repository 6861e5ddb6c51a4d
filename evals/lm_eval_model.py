"""Our checkpoints as an lm-evaluation-harness model, registered under the name `patchtrain`.

Importing this module registers the class with lm-eval (0.4.13 has no plugin entry points, and this
project is not an installed package, so the `lm_eval` console script never imports it by itself:
`python -m evals.lm_eval_harness` does, then runs lm-eval's own command line).

Everything runs in process through `evals.backends.jax_backend.JaxModel`, built by `load_jax_model`
on the one checkpoint opener (`patch_training.contract.checkpoint`):
- `loglikelihood`: one teacher-forced scoring pass per batch (`JaxModel.score_continuations`), which
  also says whether each continuation is what greedy decoding would produce;
- `loglikelihood_rolling`: each document cut into lm-eval's own disjoint rolling windows over
  `max_length` tokens (`lm_eval.utils.get_rolling_token_windows`), all windows scored by that pass;
- `generate_until`: the decoding engine (`JaxModel.generate_ids`), every request with the same
  generation settings in one continuous-batching run, cut at the `until` strings.

Tokenization is JaxModel's (`split_ids`: encode context + continuation, cut at the context), so the
numbers are the same as `JaxModel.loglikelihood` gives and as `evals.serve` returns for the same ids.

Model args (`--model_args k=v,...`): checkpoint=DIR (params checkpoint or trainer run dir) or
hf_dir=DIR, batch_size (default: lm-eval's --batch_size), decode_dtype=float32|bfloat16 (default:
the checkpoint's), max_length (default: the model's max_seq_len), max_gen_toks (256), add_bos, seed.
"""
from __future__ import annotations

import json
import logging
from typing import Any

import lm_eval.models  # noqa: F401 - lm-eval's built-in models first: see below
from lm_eval import utils as lm_utils
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm import tqdm

from evals.backends.jax_backend import JaxModel, _prompt_seed, load_jax_model
from evals.model_api import Sampling
from patch_training.errors import UserError

log = logging.getLogger(__name__)
# lm-eval 0.4.13 fills its registry with its own models (hf, local-completions, ...) only when a lookup
# finds the registry empty; registering ours first would hide all of them. Importing lm_eval.models
# (above) registers them before ours.

MODEL_NAME = "patchtrain"
DEFAULT_BATCH_SIZE = 8
MODEL_ARGS = ("checkpoint", "hf_dir", "batch_size", "decode_dtype", "max_length", "max_gen_toks", "add_bos", "seed")


def _as_int(name: str, value: Any, lo: int = 1) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise UserError(f"{MODEL_NAME}: model_args {name}={value!r} is not an integer") from None
    if n < lo:
        raise UserError(f"{MODEL_NAME}: model_args {name}={value!r} must be an integer >= {lo}")
    return n


def _as_bool(name: str, value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise UserError(f"{MODEL_NAME}: model_args {name}={value!r} is not true or false")


@register_model(MODEL_NAME)
class PatchTrainLM(LM):
    """lm-eval's `LM` over a `JaxModel` (see the module docstring)."""

    def __init__(self, checkpoint: str | None = None, hf_dir: str | None = None, batch_size: Any = None,
                 decode_dtype: str | None = None, max_length: Any = None, max_gen_toks: Any = 256,
                 add_bos: Any = None, seed: Any = 0, model: JaxModel | None = None, **unknown: Any):
        super().__init__()
        # lm-eval hands every model these two from its own flags; they mean torch devices and batch probing.
        unknown.pop("max_batch_size", None)
        device = unknown.pop("device", None)
        if device not in (None, "cpu"):
            log.info("%s: --device %s ignored: JAX places the model on its default device", MODEL_NAME, device)
        if unknown:
            raise UserError(f"{MODEL_NAME}: unknown model_args {', '.join(sorted(unknown))} "
                            f"(known: {', '.join(MODEL_ARGS)})")
        if isinstance(batch_size, str) and batch_size.startswith("auto"):
            # lm-eval's "auto" probes the largest batch that fits on a torch device; we have no such probe.
            log.info("%s: batch_size %s -> %d", MODEL_NAME, batch_size, DEFAULT_BATCH_SIZE)
            batch_size = None
        batch = DEFAULT_BATCH_SIZE if batch_size is None else _as_int("batch_size", batch_size)
        from evals.decoding import DECODE_DTYPES
        if decode_dtype is not None and decode_dtype not in DECODE_DTYPES:
            raise UserError(f"{MODEL_NAME}: model_args decode_dtype={decode_dtype!r}: expected one of "
                            f"{', '.join(DECODE_DTYPES)}")
        if model is None:
            if bool(checkpoint) == bool(hf_dir):
                raise UserError(f"{MODEL_NAME}: give exactly one of checkpoint=DIR or hf_dir=DIR in --model_args")
            model = load_jax_model(checkpoint=checkpoint, hf_dir=hf_dir, batch_size=batch,
                                   add_bos=_as_bool("add_bos", add_bos), decode_dtype=decode_dtype)
        self.model = model
        self.max_length = (_as_int("max_length", max_length, lo=2) if max_length is not None
                           else int(model.config.max_seq_len))
        self.max_gen_toks = _as_int("max_gen_toks", max_gen_toks)
        self.seed = _as_int("seed", seed, lo=0)

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any], additional_config: dict[str, Any] | None = None):
        # lm-eval passes its own --batch_size (default 1) beside the model args; a model arg of the same
        # name would be a duplicate keyword, so the model args win.
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None and k not in arg_dict}
        return cls(**arg_dict, **extra)

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict[str, Any] | None = None):
        return cls.create_from_arg_obj(lm_utils.simple_parse_args_string(arg_string), additional_config)

    # ------------------------------------------------------------------ helpers
    @property
    def prefix_token_id(self) -> int:
        """What an empty context or a document's first window conditions on: BOS, else EOS."""
        return self.model.vocab.start_ids()[0]

    def _fit(self, ctx: list[int], cont: list[int]) -> tuple[list[int], list[int]]:
        """Left-truncate the context so that the row fits max_length inputs plus the last target
        (as lm-eval's HF model does); a continuation that cannot fit is an error, not a silent cut."""
        if len(cont) > self.max_length:
            raise UserError(f"{MODEL_NAME}: a continuation of {len(cont)} tokens does not fit max_length "
                            f"{self.max_length}")
        over = len(ctx) + len(cont) - (self.max_length + 1)
        return (ctx[over:] if over > 0 else ctx), cont

    def _score(self, pairs: list[tuple[list[int], list[int]]], desc: str,
               disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """Score in batches of similar length (longest first: padding stays small, the slowest batch
        shows up first) and return in the order given."""
        order = sorted(range(len(pairs)), key=lambda i: -(len(pairs[i][0]) + len(pairs[i][1])))
        out: list[tuple[float, bool] | None] = [None] * len(pairs)
        step = self.model.batch_size
        with tqdm(total=len(pairs), desc=desc, disable=disable_tqdm) as bar:
            for b0 in range(0, len(order), step):
                idx = order[b0:b0 + step]
                for i, res in zip(idx, self.model.score_continuations([pairs[i] for i in idx])):
                    out[i] = res
                bar.update(len(idx))
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ lm-eval's three requests
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [self._fit(*self.model.split_ids(context, continuation))
                 for context, continuation in (r.args for r in requests)]
        results = self._score(pairs, "loglikelihood", disable_tqdm)
        for r, res in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", r.args, res)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owner = [], []
        for k, (text,) in enumerate(r.args for r in requests):
            for w in lm_utils.get_rolling_token_windows(token_list=self.model.vocab.encode(text),
                                                        prefix_token=self.prefix_token_id,
                                                        max_seq_len=self.max_length, context_len=1):
                windows.append(lm_utils.make_disjoint_window(w))
                owner.append(k)
        totals = [0.0] * len(requests)
        for k, (lp, _) in zip(owner, self._score(windows, "loglikelihood_rolling", disable_tqdm)):
            totals[k] += lp
        for r, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", r.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        groups: dict[str, list[int]] = {}
        settings: dict[str, tuple[Sampling, int]] = {}
        for i, (_, gen_kwargs) in enumerate(r.args for r in requests):
            key = json.dumps(gen_kwargs, sort_keys=True, default=str)
            if key not in settings:
                settings[key] = self._sampling(gen_kwargs)
            groups.setdefault(key, []).append(i)
        out: list[str] = [""] * len(requests)
        with tqdm(total=len(requests), desc="generate_until", disable=disable_tqdm) as bar:
            for key, idx in groups.items():
                sampling, keep = settings[key]
                contexts = [requests[i].args[0] for i in idx]
                # As lm-eval's HF model: keep the last max_length - max_gen_toks tokens of a long context.
                ids = [self.model.prompt_ids(c, chat=False)[-keep:] for c in contexts]
                seeds = [_prompt_seed(sampling.seed, c) for c in contexts]
                for i, c, (done,) in zip(idx, contexts, self.model.generate_ids(ids, 1, sampling, seeds=seeds)):
                    out[i] = done.text
                    self.cache_hook.add_partial("generate_until", requests[i].args, done.text)
                bar.update(len(idx))
        return out

    def _sampling(self, gen_kwargs: dict[str, Any]) -> tuple[Sampling, int]:
        """lm-eval's generation kwargs -> (Sampling, context tokens kept)."""
        kw = dict(gen_kwargs or {})
        until = kw.pop("until", None)
        until = [until] if isinstance(until, str) else list(until or [])
        if not all(isinstance(u, str) for u in until):
            raise UserError(f"{MODEL_NAME}: gen_kwargs until={until!r} must be strings")
        max_new = _as_int("max_gen_toks", kw.pop("max_gen_toks", self.max_gen_toks))
        do_sample = _as_bool("do_sample", kw.pop("do_sample", None))
        temperature = kw.pop("temperature", None)
        # HF's rule: do_sample=False or temperature 0 is greedy; sampling without a temperature uses 1.
        if do_sample is False:
            temperature = 0.0
        elif temperature is None:
            temperature = 1.0 if do_sample else 0.0
        temperature = float(temperature)
        top_p = float(kw.pop("top_p", None) or 1.0)
        top_k = int(kw.pop("top_k", None) or 0)
        if kw.get("num_beams", 1) in (1, "1"):      # one beam is plain decoding: nothing to do
            kw.pop("num_beams", None)
        if kw:   # a setting we cannot honour would change the numbers silently
            raise UserError(f"{MODEL_NAME}: gen_kwargs {', '.join(sorted(kw))} not supported "
                            "(known: until, max_gen_toks, do_sample, temperature, top_p, top_k, num_beams=1)")
        if max_new >= self.max_length:
            raise UserError(f"{MODEL_NAME}: max_gen_toks {max_new} leaves no room for a prompt in max_length "
                            f"{self.max_length}")
        try:
            sampling = Sampling(max_new_tokens=max_new, temperature=temperature, top_p=top_p, top_k=top_k,
                                seed=self.seed, stop=tuple(u for u in until if u))
        except ValueError as e:
            raise UserError(f"{MODEL_NAME}: gen_kwargs: {e}") from None
        return sampling, self.max_length - max_new

    # ------------------------------------------------------------------ chat formatting
    @property
    def tokenizer_name(self) -> str:
        return self.model.vocab.name or self.model.vocab.fingerprint

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.model.vocab.chat_template

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        if not add_generation_prompt:
            raise UserError(f"{MODEL_NAME}: a chat template without the assistant's turn opener is not supported")
        return self.model.vocab.render_chat(chat_history)

