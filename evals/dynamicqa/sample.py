"""Stage 1: sample answers for every (item, condition) and stream them to `samples.jsonl` + `dists.bin`.

Per item three prompts are sampled: the question alone (shared by both variants: it does not depend on
which answer the context holds) and the question after each filled context. Each prompt gets `n`
samples; per sample we keep the text, the token log-probs, the mean token NLL and, when the backend
provides it, the mean full-vocabulary distribution (appended to the distribution file; the JSONL line
refers to its row). Work goes out in chunks of items, so memory holds one chunk's distributions at most.
A rerun skips items already written; distribution rows a crash left without a line are dropped.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from evals.dynamicqa.data import VARIANTS, FactItem
from evals.dynamicqa.dist_store import DistWriter
from evals.dynamicqa.prompts import CONTEXT, Q_ONLY, context_prompt, question_only_prompt
from evals.model_api import Completion, LanguageModel, Sampling

DIST_NAME = "dists"
P_S_STEPS = ("all", "kept")


@dataclasses.dataclass(frozen=True)
class SamplingPlan:
    """The official protocol by default: 10 samples, T = 0.5, top-p 1.0, at most 20 new tokens, no stop but the
    model's EOS, and p_s = the mean softmax of the raw logits over every generated step, the EOS step included.

    `stop=("\n",)` with `p_s_steps="kept"` is this project's earlier variant, kept for base models that go on
    past the answer's line: the answer ends at the newline, and p_s averages only the answer's own tokens
    (the step that sampled the newline belongs to what would follow). Scores under it are not the paper's.
    """
    num_samples: int = 10
    temperature: float = 0.5
    top_p: float = 1.0
    max_new_tokens: int = 20
    seed: int = 0
    stop: tuple[str, ...] = ()
    p_s_steps: str = "all"              # "all" (official: EOS/stop step included) | "kept" (answer tokens only)
    chat: bool = False
    dist_dtype: str = "float32"

    def __post_init__(self):
        if self.p_s_steps not in P_S_STEPS:
            raise ValueError(f"p_s_steps must be one of {P_S_STEPS}, got {self.p_s_steps!r}")

    def sampling(self) -> Sampling:
        return Sampling(max_new_tokens=self.max_new_tokens, temperature=self.temperature,
                        top_p=self.top_p, seed=self.seed, stop=self.stop, return_dist=True,
                        dist_includes_stop=self.p_s_steps == "all", chat=self.chat)

    def settings(self) -> dict[str, Any]:
        """What decides the samples (recorded with them; a resume under other settings is refused)."""
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        return d


def _done_items(samples_path: Path) -> tuple[set[str], int]:
    """(base ids "type/row" fully written, 1 + the highest distribution row referenced)."""
    counts: dict[str, int] = {}
    max_row = -1
    if not samples_path.is_file():
        return set(), 0
    with samples_path.open() as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue   # a torn last line from a killed run; its item is redone
            base = rec["id"].rsplit("/", 1)[0]
            counts[base] = counts.get(base, 0) + 1
            for s in rec.get("samples", []):
                ref = s.get("dist_ref")
                if ref:
                    max_row = max(max_row, int(ref["row"]))
    # An item is complete with its four lines (q_only and context, for both variants).
    return {b for b, c in counts.items() if c >= 2 * len(VARIANTS)}, max_row + 1


def _sample_json(c: Completion, ref: dict | None) -> dict[str, Any]:
    nll = c.mean_nll
    out = {"text": c.text.strip(), "mean_nll": nll if np.isfinite(nll) else None, "token_logprobs": list(c.token_logprobs),
           "finish_reason": c.finish_reason}
    if c.approximate:
        out["approximate"] = True
    if ref is not None:
        out["dist_ref"] = ref
    return out


def _rewrite_without_torn_lines(path: Path) -> None:
    """Drop undecodable lines (a killed writer's last line) so the file stays valid JSONL."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    good = []
    for line in lines:
        try:
            json.loads(line)
            good.append(line if line.endswith("\n") else line + "\n")
        except json.JSONDecodeError:
            pass
    if len(good) != len(lines) or (lines and not lines[-1].endswith("\n")):
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(good))
        os.replace(tmp, path)


def sample_items(model: LanguageModel, items: Sequence[FactItem], out_dir: str | Path,
                 plan: SamplingPlan = SamplingPlan(), chunk_items: int = 4,
                 log: Callable[[str], None] = print) -> Path:
    """Sample every item not yet in `out_dir/samples.jsonl`; returns that path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    samples_path = out_dir / "samples.jsonl"
    _rewrite_without_torn_lines(samples_path)
    done, rows_used = _done_items(samples_path)
    todo = [it for it in items if f"{it.fact_type}/{it.row}" not in done]
    if not todo:
        log(f"dynamicqa: all {len(items)} items already sampled in {samples_path}")
        return samples_path
    log(f"dynamicqa: sampling {len(todo)} items ({len(items) - len(todo)} already done), "
        f"{3 * len(todo)} prompts x {plan.num_samples} samples")
    sampling = plan.sampling()
    writer: DistWriter | None = None
    if (out_dir / f"{DIST_NAME}.json").is_file():
        header = json.loads((out_dir / f"{DIST_NAME}.json").read_text())
        writer = DistWriter(out_dir, DIST_NAME, header["vocab_size"], plan.dist_dtype)
        writer.truncate(rows_used)
    start = time.time()
    prompts_done = 0
    with samples_path.open("a") as out:
        for c0 in range(0, len(todo), chunk_items):
            chunk = todo[c0:c0 + chunk_items]
            prompts = []
            for it in chunk:
                prompts.append(question_only_prompt(it))
                prompts.extend(context_prompt(it, v) for v in VARIANTS)
            results = model.generate(prompts, plan.num_samples, sampling)
            if len(results) != len(prompts) or any(len(r) != plan.num_samples for r in results):
                raise RuntimeError("the model returned the wrong number of completions")
            refs: list[list[dict | None]] = []
            for completions in results:
                # A sample with no summed step (an empty answer under p_s_steps="kept") gets no row.
                have = [k for k, c in enumerate(completions) if c.mean_dist is not None]
                row_refs: list[dict | None] = [None] * len(completions)
                if have:
                    table = np.stack([np.asarray(completions[k].mean_dist) for k in have])
                    if writer is None:
                        writer = DistWriter(out_dir, DIST_NAME, table.shape[1], plan.dist_dtype)
                        writer.truncate(rows_used)
                    for k, r in zip(have, writer.append(table)):
                        row_refs[k] = {"file": DIST_NAME, "row": r}
                refs.append(row_refs)
            lines = []
            for k, it in enumerate(chunk):
                q_idx = 3 * k
                for v_i, variant in enumerate(VARIANTS):
                    c_idx = 3 * k + 1 + v_i
                    for condition, idx in ((Q_ONLY, q_idx), (CONTEXT, c_idx)):
                        lines.append({
                            "id": it.item_id(variant), "condition": condition, "fact_type": it.fact_type,
                            "gold": it.gold(variant), "question": it.question,
                            "samples": [_sample_json(c, r) for c, r in zip(results[idx], refs[idx])],
                        })
            out.write("".join(json.dumps(l) + "\n" for l in lines))
            out.flush()
            prompts_done += len(prompts)
            elapsed = time.time() - start
            rate = prompts_done / max(elapsed, 1e-9)
            left = 3 * len(todo) - prompts_done
            log(f"dynamicqa: {prompts_done}/{3 * len(todo)} prompts ({rate:.2f} prompts/s, "
                f"{rate * plan.num_samples:.1f} samples/s, ETA {left / max(rate, 1e-9):.0f}s)")
    return samples_path
