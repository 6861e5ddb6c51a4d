"""The whole Case2Code synthesis as one resumable run: harvest -> inputs -> sandbox (twice) -> keep rule ->
final re-run -> behavioural dedup -> splits and prompts, with a funnel count at every stage.

`OUT/work/` holds the resumable state: the harvest (written whole), the input journal, and one sandbox journal
per pass. A killed run restarted with the same settings redoes no finished unit. The deliverables
(`functions.jsonl`, `{train,validation,test}.jsonl`, `funnel.json`) are written atomically at the end,
`funnel.json` last; when it exists with the same settings, the run is already finished and is skipped.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from pathlib import Path

from evals.execution import Limits, Program, SandboxPool
from case2code_finetune import execute as ex
from case2code_finetune.decontaminate import Decontaminator, default_test_set
from case2code_finetune.dedup import behaviour_key
from case2code_finetune.harvester import default_sources, harvest_functions, python_files
from case2code_finetune.input_values import kwargs_source, parse_kwargs_source
from case2code_finetune.llm_inputs import build_prompt
from case2code_finetune.jsonl_io import AppendJournal, read_jsonl, write_atomic, write_json_atomic
from case2code_finetune.progress import Progress
from case2code_finetune.splits import assign_splits, official_row, training_rows
from case2code_finetune.typed_inputs import TypedInputs
from patch_training.errors import UserError

log = logging.getLogger("case2code_finetune")
INPUT_CHUNK = 32
SECOND_PASS_HASH_SEED = 1


@dataclasses.dataclass
class SynthesisConfig:
    out: str
    sources: list[str] = dataclasses.field(default_factory=list)   # empty: stdlib + site-packages
    inputs: str = "typed"                                          # typed | llm | both
    max_functions: int | None = None
    official_filter: bool = False
    seed: int = 0
    test_set: str | None = "default"                               # Case2Code test.jsonl for decontamination
    test_fraction: float = 0.1
    validation_fraction: float = 0.05
    min_test: int = 500
    by_module: bool = False
    train_prompts_per_function: int = 2
    wall_s: float = 2.0
    num_workers: int | None = None                                 # not part of the fingerprint
    model_id: str | None = None                                    # endpoint/checkpoint identity (llm inputs)

    def fingerprint(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("num_workers")
        d.pop("out")
        return d


def _check_settings(out: Path, cfg: SynthesisConfig) -> None:
    path = out / "work" / "config.json"
    if path.exists():
        old = json.loads(path.read_text())
        if old != cfg.fingerprint():
            diff = sorted(k for k in set(old) | set(cfg.fingerprint()) if old.get(k) != cfg.fingerprint().get(k))
            raise UserError(f"{out} holds a synthesis run with other settings ({', '.join(diff)}); "
                            f"use another --out or delete {out}")
    else:
        write_json_atomic(path, cfg.fingerprint())


def _harvest(cfg: SynthesisConfig, work: Path) -> tuple[list[dict], Counter]:
    rows_path, counts_path = work / "harvested.jsonl", work / "harvest_counts.json"
    if rows_path.exists() and counts_path.exists():
        log.info("harvest: reusing %s", rows_path)
        return list(read_jsonl(rows_path)), Counter(json.loads(counts_path.read_text()))
    sources = [Path(s) for s in cfg.sources] or default_sources()
    counts: Counter = Counter()
    decon = None
    if cfg.test_set:
        test_path = default_test_set() if cfg.test_set == "default" else Path(cfg.test_set)
        if test_path is None or not Path(test_path).exists():
            raise UserError(f"Case2Code test set for decontamination not found ({cfg.test_set}); "
                            "pass --test_set PATH or --no_decontaminate")
        decon = Decontaminator.from_jsonl(test_path)
    if cfg.max_functions is not None:
        prog = Progress("harvest (functions kept)", cfg.max_functions)
    else:
        prog = Progress("harvest (files)", len(python_files(sources, Counter())))
    rows = list(harvest_functions(sources, counts=counts, decontaminator=decon, max_functions=cfg.max_functions,
                                  seed=cfg.seed, progress=prog))
    prog.finish()
    write_atomic(rows_path, rows)
    write_json_atomic(counts_path, dict(counts))
    return rows, counts


def _generators(cfg: SynthesisConfig, model) -> list:
    """The input generators, model first: with `both`, the model's inputs come first and typed ones fill up."""
    gens = []
    if cfg.inputs in ("llm", "both"):
        if model is None:
            raise UserError("--inputs llm/both needs --endpoint URL or --checkpoint DIR")
        from case2code_finetune.llm_inputs import LLMInputs  # noqa: PLC0415
        gens.append(LLMInputs(model, seed=cfg.seed))
    if cfg.inputs in ("typed", "both"):
        gens.append(TypedInputs(seed=cfg.seed))
    if not gens:
        raise UserError(f"--inputs must be typed, llm or both, not {cfg.inputs!r}")
    return gens


def _inputs(cfg: SynthesisConfig, rows: list[dict], work: Path, model) -> tuple[dict[str, list[dict]], Counter]:
    """-> function id -> [{"src": "dict(...)", "origin": "typed"|"llm"}], resumable per chunk."""
    gens = _generators(cfg, model)
    journal = AppendJournal(work / "inputs.jsonl")
    pending = [r for r in rows if r["id"] not in journal.done]
    prog = Progress("inputs (functions)", len(rows))
    prog.update(len(rows) - len(pending), force=True)
    try:
        for i in range(0, len(pending), INPUT_CHUNK):
            chunk = pending[i:i + INPUT_CHUNK]
            per_gen = []
            for g in gens:
                c: Counter = Counter()
                per_gen.append((g.name, g.generate(chunk, c), c))
            recs = []
            for k, r in enumerate(chunk):
                seen, items = set(), []
                for name, got, _ in per_gen:
                    for kw in got.get(r["id"], []):
                        src = kwargs_source(kw)
                        if src not in seen:
                            seen.add(src)
                            items.append({"src": src, "origin": name})
                # the chunk's generator counts ride on its first record, so a resumed total is exact
                rec_counts = {key: v for _, _, c in per_gen for key, v in c.items()} if k == 0 else {}
                rec = {"id": r["id"], "inputs": items, "counts": rec_counts}
                for g in gens:  # keep what the model said: the official `filtered` rows carry it
                    if getattr(g, "last_answers", None) and r["id"] in g.last_answers:
                        rec["llm_answer"] = g.last_answers[r["id"]]
                recs.append(rec)
            journal.append_many(recs)
            prog.update(len(rows) - len(pending) + i + len(chunk))
    finally:
        journal.close()
    prog.finish()
    counts: Counter = Counter()
    for rec in journal.done.values():
        counts.update(rec.get("counts", {}))
    inputs = {i: rec["inputs"] for i, rec in journal.done.items()}
    for r in rows:  # the model's raw answer travels with the harvested row into functions.jsonl
        answer = journal.done.get(r["id"], {}).get("llm_answer")
        if answer is not None:
            r["llm_answer"] = answer
    counts["with_inputs"] = sum(1 for r in rows if inputs.get(r["id"]))
    return inputs, counts


def _record(row: dict, kept_in: list[dict], kept_out: list[dict]) -> dict:
    """A kept function in the official `filtered` shape, plus our provenance."""
    exs = ex.example_str(kept_in)
    kwargs = [parse_kwargs_source(k["src"]) for k in kept_in]
    return {
        "id": row["id"], "task": "write_testcase", "data": row["source"], "check_result": True, "code": row["code"],
        "func_name": row["func_name"], "example_str": exs, "exec_status": True,
        "example_inputs": [json.dumps(repr(kw)) for kw in kwargs],
        "example_outputs": kept_out,
        "parsed_inputs": [[[k, repr(v)] for k, v in kw.items()]
                                                                   for kw in kwargs],
        "inputs": [k["src"] for k in kept_in], "input_origins": [k["origin"] for k in kept_in],
        "content": row["content"], "import_code": row["import_code"], "constants": row["constants"],
        "helpers": row["helpers"], "fn_hash": row["fn_hash"], "module": row["module"], "source": row["source"],
        "lineno": row["lineno"],
        **({"prompt": build_prompt(row["content"]), "completions": row["llm_answer"]}
           if "llm_answer" in row and any(k["origin"] == "llm" for k in kept_in) else {}),
    }


def _execute(cfg: SynthesisConfig, rows: list[dict], inputs: dict, work: Path) -> tuple[list[dict], Counter]:
    counts: Counter = Counter()
    limits = Limits(wall_s=cfg.wall_s, program_wall_s=max(10.0, 4 * cfg.wall_s))
    programs = ex.programs_for(rows, inputs)
    by_id = {r["id"]: r for r in rows}
    # Pool A (the default hash seed) serves pass A, the final re-run and the behavioural probe; pool B's
    # interpreters hash strings with another seed, so output that depends on set order disagrees between passes.
    with SandboxPool(cfg.num_workers, limits=limits) as pool:
        res_a = ex.run_pass(pool, programs, str(work / "pass_a.jsonl"), "sandbox pass A")
        with SandboxPool(cfg.num_workers, limits=limits, hash_seed=SECOND_PASS_HASH_SEED) as pool_b:
            res_b = ex.run_pass(pool_b, programs, str(work / "pass_b.jsonl"), "sandbox pass B (other hash seed)")
        rule = ex.KeepRule(official=cfg.official_filter)
        records, decisions = [], []
        for p in programs:
            got = ex.select(by_id[p.task_id], inputs[p.task_id], res_a.get(p.task_id), res_b.get(p.task_id), rule,
                            counts)
            if isinstance(got, str):
                counts[f"drop_{got}"] += 1
                decisions.append({"id": p.task_id, "func_name": p.entry, "module": by_id[p.task_id]["module"],
                                  "dropped": got})
                continue
            counts["kept"] += 1
            records.append(_record(by_id[p.task_id], *got))
        res_f = ex.run_pass(pool, ex.final_programs(records), str(work / "final.jsonl"), "sandbox final re-run")
        final = []
        for r in records:
            if ex.reproduced(r, res_f.get(r["id"])):
                final.append(r)
            else:
                counts["drop_final_mismatch"] += 1
                decisions.append({"id": r["id"], "func_name": r["func_name"], "module": r["module"],
                                  "dropped": "final_mismatch"})
        counts["reproduced"] = len(final)
        # why each executed function was dropped: for reading, not for resuming
        write_atomic(work / "dropped_after_execution.jsonl", decisions)
        deduped = _behavioural_dedup(pool, final, work, counts)
    counts["deduped"] = len(deduped)
    return deduped, counts


def _behavioural_dedup(pool, records: list[dict], work: Path, counts: Counter) -> list[dict]:
    """Drop functions that behave like an earlier one. Functions with the same keyword parameters are run on
    one shared probe set (the first member's inputs); equal outcome vectors mean a behavioural duplicate.
    Different functions drew different inputs, so comparing their own tables alone would miss most twins."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        names = tuple(sorted(parse_kwargs_source(r["inputs"][0]))) if r["inputs"] else ()
        groups.setdefault(names, []).append(r)
    programs = []
    for members in groups.values():
        if len(members) < 2:
            continue
        probe = [{"kwargs_src": src} for src in members[0]["inputs"]]
        programs += [Program(f"{m['id']}@probe", m["code"], m["func_name"], calls=probe) for m in members]
    probe_out: dict[str, list] = {}
    if programs:
        for tid, res in ex.run_pass(pool, programs, str(work / "behaviour.jsonl"), "behavioural probe").items():
            probe_out[tid[:-len("@probe")]] = ex.outcome_strings(res)
    out, seen = [], set()
    for r in records:
        outs = probe_out.get(r["id"])
        key = behaviour_key(r["inputs"], r["example_outputs"]) if outs is None or None in outs else \
            json.dumps([sorted(parse_kwargs_source(r["inputs"][0])), outs], sort_keys=True)
        if key in seen:
            counts["drop_behavioural_duplicate"] += 1
            continue
        seen.add(key)
        out.append(r)
    return out


FUNNEL_STAGES = ("harvested", "passed_filters", "after_exact_dedup", "after_near_dedup", "decontaminated",
                 "with_inputs", "executed", "deterministic", "kept", "reproduced", "deduped")


def _funnel(hc: Counter, ic: Counter, xc: Counter, split_counts: dict, elapsed: float, cfg) -> dict:
    after_exact = hc["passed_filters"] - hc["drop_exact_duplicate"]
    stage_values = {**hc, **ic, **xc, "after_exact_dedup": after_exact,
                    "after_near_dedup": after_exact - hc["drop_near_duplicate"]}
    stages = [[s, int(stage_values.get(s, 0))] for s in FUNNEL_STAGES] + \
             [[k, v] for k, v in split_counts.items() if k.startswith("rows_")]
    drops = {k[5:]: v for c in (hc, xc) for k, v in sorted(c.items()) if k.startswith("drop_")}
    files = {k: hc[k] for k in ("files", "parsed_files", "non_utf8_files", "unparseable_files", "duplicate_files",
                                "oversized_files", "unreadable_files", "skipped_test_files", "skipped_dirs")}
    inputs = {k: v for k, v in {**ic, **xc}.items() if k.startswith(("llm_", "typed_", "inputs_"))}
    harvested = max(hc["harvested"], 1)
    return {"stages": stages, "drops": drops, "files": files, "inputs": inputs,
            "functions_per_split": {k: v for k, v in split_counts.items() if k.startswith("functions_")},
            "kept_share_of_harvested": round(stage_values.get("deduped", 0) / harvested, 5),
            "elapsed_s": round(elapsed, 1), "settings": cfg.fingerprint()}


def format_funnel(funnel: dict) -> str:
    lines = ["Case2Code synthesis funnel:"]
    lines += [f"  {name:<20} {count:>8}" for name, count in funnel["stages"]]
    if funnel["drops"]:
        lines.append("  dropped: " + ", ".join(f"{k}={v}" for k, v in funnel["drops"].items()))
    bad = {k: v for k, v in funnel["files"].items() if k in ("non_utf8_files", "unparseable_files") and v}
    if bad:
        lines.append("  files: " + ", ".join(f"{k}={v}" for k, v in bad.items()))
    if funnel["inputs"]:
        lines.append("  inputs: " + ", ".join(f"{k}={v}" for k, v in sorted(funnel["inputs"].items())))
    lines.append(f"  kept share of harvested: {funnel['kept_share_of_harvested']:.4f}")
    return "\n".join(lines)


def synthesize(cfg: SynthesisConfig, *, model=None) -> dict:
    """Run (or resume, or skip when finished) the synthesis into `cfg.out`; returns the funnel."""
    for s in cfg.sources:
        if not Path(s).is_dir():
            raise UserError(f"source directory does not exist: {s}")
    if cfg.inputs not in ("typed", "llm", "both"):
        raise UserError(f"--inputs must be typed, llm or both, not {cfg.inputs!r}")
    if cfg.inputs != "typed" and model is None:
        raise UserError("--inputs llm/both needs --endpoint URL or --checkpoint DIR")
    out = Path(cfg.out)
    funnel_path = out / "funnel.json"
    if funnel_path.exists():
        funnel = json.loads(funnel_path.read_text())
        if funnel.get("settings") == cfg.fingerprint():
            log.info("synthesis already finished in %s (delete funnel.json to redo the last step)", out)
            return funnel
    work = out / "work"
    _check_settings(out, cfg)
    t0 = time.monotonic()
    rows, hc = _harvest(cfg, work)
    log.info("harvest: %d functions from %d files", len(rows), hc["files"])
    inputs, ic = _inputs(cfg, rows, work, model)
    records, xc = _execute(cfg, rows, inputs, work)
    split_of = assign_splits(records, test_fraction=cfg.test_fraction, validation_fraction=cfg.validation_fraction,
                             min_test=cfg.min_test, by_module=cfg.by_module, seed=cfg.seed)
    split_rows: dict[str, list[dict]] = {"train": [], "validation": [], "test": []}
    for r in records:
        split = split_of[r["id"]]
        if split == "train":
            split_rows["train"] += training_rows(r, cfg.train_prompts_per_function, cfg.seed)
        else:
            split_rows[split].append(official_row(r, cfg.seed))
    split_counts = {}
    for split, srows in split_rows.items():
        split_counts[f"functions_{split}"] = sum(1 for r in records if split_of[r["id"]] == split)
        split_counts[f"rows_{split}"] = write_atomic(out / f"{split}.jsonl", srows)
    write_atomic(out / "functions.jsonl", [dict(r, split=split_of[r["id"]]) for r in records])
    funnel = _funnel(hc, ic, xc, split_counts, time.monotonic() - t0, cfg)
    write_json_atomic(funnel_path, funnel)
    return funnel
