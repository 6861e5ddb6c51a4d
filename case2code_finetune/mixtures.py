"""Mixtures: rows drawn from several row caches at configured rates, a pure function of the step.

The paper's three variants differ only in what is mixed:
- direct fine-tuning: Case2Code rows alone (no mixture needed);
- mixed pre-training: the code/text corpus rows plus Case2Code rows at a configurable rate;
- mixed instruction fine-tuning: Case2Code rows plus a second instruction source.

`MixtureDataset` keeps the trainer's contract (`host_batch(step, ...)`): the number of rows each
member gives to step `s` is a multinomial draw seeded by (seed, s), and each member walks its own
seeded epoch permutation, so exact resume still needs only the step. Rates are per *row* of the
packed caches (every row has the same length, so a rate is a share of the token budget).

When every member is a prompt/answer Task, `register_seqio_mixture` also registers the matching
`seqio.Mixture`, for anyone who consumes the data through seqio directly.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Sequence

import gin
import numpy as np

from patch_training.data.factory import one_line_errors
from patch_training.data.walk import host_slice
from patch_training.errors import UserError


def check_rates(names: Sequence[str], rates: Sequence[Any], where: str) -> np.ndarray:
    """Rates as probabilities; a rate that is not a positive finite number is one clear line."""
    if len(names) != len(rates):
        raise UserError(f"{where}: {len(names)} members but {len(rates)} rates")
    if not names:
        raise UserError(f"{where}: a mixture needs at least one member")
    values = []
    for name, rate in zip(names, rates):
        try:
            value = float(rate)
        except (TypeError, ValueError):
            raise UserError(f"{where}: rate of {name!r} is {rate!r}, not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"{where}: rate of {name!r} must be positive, got {rate!r}")
        values.append(value)
    p = np.asarray(values, np.float64)
    return p / p.sum()


class MixtureDataset:
    """Deterministic mixed batches by step over member datasets with `rows(ids)` and `num_rows`."""

    def __init__(self, members: Sequence[Any], rates: Sequence[float], *, names: Sequence[str] | None = None,
                 seed: int = 0, name: str = "mixture"):
        names = list(names) if names is not None else [
            str(getattr(m, "meta", {}).get("task", f"member{i}")) for i, m in enumerate(members)]
        self.name = name
        self.names = names
        self.probabilities = check_rates(names, rates, f"mixture {name!r}")
        self.members = list(members)
        self.seed = int(seed)
        lengths = {int(m.sequence_length) for m in self.members}
        if len(lengths) != 1:
            raise UserError(f"mixture {name!r}: members have different row lengths {sorted(lengths)}")
        for member_name, m in zip(names, self.members):
            if getattr(m, "patch_size", 1) != 1:
                raise UserError(f"mixture {name!r}: member {member_name!r} holds patch rows; mix token rows")
            if m.num_rows == 0:
                raise UserError(f"mixture {name!r}: member {member_name!r} has no rows")
        self.sequence_length = lengths.pop()
        self.patch_size = 1
        self.num_rows = int(sum(m.num_rows for m in self.members))
        self.meta = {"task": name, "split": "train", "members": names,
                     "rates": [float(p) for p in self.probabilities]}
        # Per-batch-size cumulative member counts: row [s] = rows each member gave to steps < s.
        self._cumulative: dict[int, np.ndarray] = {}

    def __repr__(self) -> str:
        shares = ", ".join(f"{n}={p:.3f}" for n, p in zip(self.names, self.probabilities))
        return f"MixtureDataset({self.name}: {shares}; rows/epoch {self.num_rows}, length {self.sequence_length})"

    @property
    def fingerprint(self) -> str:
        parts = [[n, getattr(m, "fingerprint", ""), float(p)] for n, m, p in
                 zip(self.names, self.members, self.probabilities)]
        return hashlib.sha256(json.dumps([parts, self.seed]).encode()).hexdigest()[:20]

    def _counts(self, step: int, batch_size: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 0x6D6978, int(step)])
        return rng.multinomial(batch_size, self.probabilities)

    def _counts_before(self, step: int, batch_size: int) -> np.ndarray:
        table = self._cumulative.get(batch_size)
        if table is None:
            table = np.zeros((1, len(self.members)), np.int64)
        if len(table) <= step:
            extra = np.stack([self._counts(s, batch_size) for s in range(len(table) - 1, step)])
            table = np.concatenate([table, table[-1] + np.cumsum(extra, axis=0)])
            self._cumulative[batch_size] = table
        return table[step]

    def _member_rows(self, m: int, start: int, count: int) -> np.ndarray:
        """Rows start..start+count-1 of member m's walk through its seeded epoch permutations."""
        n = self.members[m].num_rows
        flat = np.arange(start, start + count, dtype=np.int64)
        epochs, offsets = np.divmod(flat, n)
        out = np.empty_like(flat)
        for e in np.unique(epochs):
            perm = np.random.default_rng([self.seed, m, int(e)]).permutation(n)
            out[epochs == e] = perm[offsets[epochs == e]]
        return out

    def global_rows(self, step: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(member index, row id within that member) for each row of the global batch at `step`."""
        counts = self._counts(step, batch_size)
        before = self._counts_before(step, batch_size)
        member = np.repeat(np.arange(len(self.members)), counts)
        rows = np.concatenate([self._member_rows(m, int(before[m]), int(counts[m]))
                               for m in range(len(self.members))])
        # Interleave members inside the batch so every host's slice is a fair sample too.
        order = np.random.default_rng([self.seed, 0x6F7264, int(step)]).permutation(batch_size)
        return member[order], rows[order]

    def host_batch(self, step: int, global_batch_size: int, process_index: int = 0,
                   process_count: int = 1) -> dict[str, np.ndarray]:
        mine = host_slice(global_batch_size, process_index, process_count)
        per_host = mine.stop - mine.start
        member, rows = self.global_rows(step, global_batch_size)
        member, rows = member[mine], rows[mine]
        out: dict[str, np.ndarray] | None = None
        for m in np.unique(member):
            sel = np.nonzero(member == m)[0]
            part = self.members[m].rows(rows[sel])
            if out is None:
                out = {k: np.zeros((per_host,) + v.shape[1:], v.dtype) for k, v in part.items()}
            for k, v in part.items():
                out[k][sel] = v
        return out


@gin.configurable("make_mixture")
def _make_mixture(*, name: str = "mixture", members: Sequence[Any] = gin.REQUIRED,
                  rates: Sequence[float] = gin.REQUIRED, member_names: Sequence[str] | None = None,
                  seed: int = 0, vocab: Any = None) -> MixtureDataset:
    """A `MixtureDataset` of member datasets.

    members: uncalled dataset factories (gin `[@c2c/make_prompt_answer_dataset, @corpus/make_dataset]`),
      called here with `vocab` (the fine-tuning run passes the checkpoint's), or built datasets.
    rates: one positive number per member (normalised to probabilities).
    """
    check_rates(list(member_names or [f"member {i}" for i in range(len(members))]), rates, f"mixture {name!r}")
    built = [m(vocab=vocab) if callable(m) and not hasattr(m, "host_batch") else m for m in members]
    return MixtureDataset(built, rates, names=member_names, seed=seed, name=name)


make_mixture = one_line_errors(_make_mixture)


def register_seqio_mixture(name: str, task_rates: Sequence[tuple[str, float]], vocab) -> str:
    """Register a `seqio.Mixture` over prompt/answer Tasks (by source name) with `vocab`; returns its name."""
    from case2code_finetune import tasks as tasks_lib
    from patch_training.data import vocab as vocab_lib
    from patch_training.tf_quiet import ensure_tensorflow_imported
    ensure_tensorflow_imported()
    import seqio

    names = [t for t, _ in task_rates]
    probabilities = check_rates(names, [r for _, r in task_rates], f"mixture {name!r}")
    fp = vocab_lib.spec_fingerprint(vocab_lib.as_spec(vocab))
    seqio_tasks = [tasks_lib.seqio_task_for(t, vocab, fp, {}) for t in names]
    mixture_name = f"mix_{name}__{hashlib.sha256(('|'.join(t.name for t in seqio_tasks)).encode()).hexdigest()[:10]}"
    if mixture_name in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.remove(mixture_name)
    seqio.MixtureRegistry.add(mixture_name, [(t.name, float(p)) for t, p in zip(seqio_tasks, probabilities)])
    return mixture_name
