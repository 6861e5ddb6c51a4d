"""The agreement figures in this folder's README: llama.cpp's server against our in-process runs on the same rows.

    .venv/bin/python benchmarks/results/llamacpp_agreement/compare.py --tokenizer /tmp/smol135 \\
        --case2code llamacpp=RUNS/c2c_llamacpp ours_fp32=RUNS/c2c_fp32 ours_bf16=RUNS/c2c_bf16 \\
        --solverlearner llamacpp=RUNS/sl_llamacpp ours_fp32=RUNS/sl_fp32 ours_bf16=RUNS/sl_bf16 \\
        --out benchmarks/results/llamacpp_agreement/agreement.json

The first run named in each list is the reference; every other is compared with it on the rows both hold (and, as a
yardstick, the later runs with the second one: ours in bf16 against ours in fp32):
- exact agreement: the share of rows whose completion texts are equal;
- first divergence: where the two completions first differ, in tokens of the model's tokenizer (both texts
  encoded the same way; the server returns text, not ids), over the rows that differ;
- the score on each side (Case2Code pass@1 from samples.jsonl, SolverLearner accuracy from judged.jsonl), and the
  difference (other - reference) with a paired bootstrap 95% interval over rows (10,000 resamples, seed 0), plus
  the discordant pairs (rows only one side gets right); for Case2Code also the share of each row's inputs the
  answer reproduces (a partial credit that still separates two sides when neither passes a row) and the statuses.
Reads run dirs written by `evals.case2code run` / `evals.solverlearner run`; writes one JSON and prints markdown.
"""
from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import numpy as np

RESAMPLES = 10_000


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def case2code_rows(run: Path) -> dict[str, dict]:
    return {r["id"]: {"text": r["completion"], "right": bool(r["passed"]), "finish": r.get("finish_reason"),
                      "status": r["status"], "matched": r["n_matched"] / r["n_inputs"] if r["n_inputs"] else 0.0}
            for r in _jsonl(run / "samples.jsonl") if r.get("sample", 0) == 0}


def solverlearner_rows(run: Path) -> dict[str, dict]:
    texts = {(r["id"], r["setting"]): r for r in _jsonl(run / "predictions.jsonl")}
    out = {}
    for j in _jsonl(run / "judged.jsonl"):
        key = (j["id"], j["setting"])
        out[f"{j['id']}|{j['setting']}"] = {"text": texts[key]["completion"], "right": bool(j["correct"]),
                                           "parse_failure": bool(j["parse_failure"]), "finish": j.get("finish_reason"),
                                           "cell": f"{j['task']}/{j['variant']}/{j['setting']}"}
    return out


def paired_bootstrap(ref: np.ndarray, other: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    diff = other.astype(float) - ref.astype(float)
    idx = np.random.default_rng(seed).integers(0, len(diff), (RESAMPLES, len(diff)))
    means = diff[idx].mean(axis=1)
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def first_divergence(tok, a: str, b: str) -> int | None:
    """Tokens the two texts share before they differ (None when equal)."""
    if a == b:
        return None
    x, y = tok.encode(a), tok.encode(b)
    n = min(len(x), len(y))
    for i in range(n):
        if x[i] != y[i]:
            return i
    return n


def compare(tok, ref: dict[str, dict], other: dict[str, dict]) -> dict:
    keys = sorted(set(ref) & set(other))
    r = np.array([ref[k]["right"] for k in keys])
    o = np.array([other[k]["right"] for k in keys])
    same = [ref[k]["text"] == other[k]["text"] for k in keys]
    div = [d for d in (first_divergence(tok, ref[k]["text"], other[k]["text"]) for k in keys) if d is not None]
    diff, lo, hi = paired_bootstrap(r, o)
    out = {"rows": len(keys), "exact_agreement": round(float(np.mean(same)), 4), "identical_rows": int(sum(same)),
           "score_reference": round(float(r.mean()), 4), "score_other": round(float(o.mean()), 4),
           "difference": round(diff, 4), "difference_ci95": [round(lo, 4), round(hi, 4)],
           "only_reference_right": int(np.sum(r & ~o)), "only_other_right": int(np.sum(o & ~r)),
           "first_divergence_tokens": None if not div else {
               "min": int(min(div)), "median": float(np.median(div)), "max": int(max(div)),
               "values": sorted(int(d) for d in div)},
           "finish_length": {"reference": sum(ref[k]["finish"] == "length" for k in keys),
                             "other": sum(other[k]["finish"] == "length" for k in keys)}}
    if "matched" in ref[keys[0]]:
        # Case2Code's partial credit: the share of a row's inputs whose output the answer reproduces (pass = all)
        rm = np.array([ref[k]["matched"] for k in keys])
        om = np.array([other[k]["matched"] for k in keys])
        d, lo2, hi2 = paired_bootstrap(rm, om)
        out["matched_inputs"] = {"reference": round(float(rm.mean()), 4), "other": round(float(om.mean()), 4),
                                 "difference": round(d, 4), "difference_ci95": [round(lo2, 4), round(hi2, 4)]}
        out["statuses"] = {"reference": dict(collections.Counter(ref[k]["status"] for k in keys)),
                           "other": dict(collections.Counter(other[k]["status"] for k in keys))}
    if "parse_failure" in ref[keys[0]]:
        out["parse_failures"] = {"reference": sum(ref[k]["parse_failure"] for k in keys),
                                 "other": sum(other[k]["parse_failure"] for k in keys)}
    return out


def _runs(specs: list[str]) -> list[tuple[str, Path]]:
    runs = []
    for spec in specs:
        label, _, path = spec.partition("=")
        runs.append((label, Path(path)))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", required=True, help="a directory with the model's tokenizer.json")
    ap.add_argument("--case2code", nargs="*", default=[], metavar="LABEL=RUN_DIR")
    ap.add_argument("--solverlearner", nargs="*", default=[], metavar="LABEL=RUN_DIR")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from evals.backends.text_vocab import from_hf_dir

    tok = from_hf_dir(args.tokenizer)
    result = {"resamples": RESAMPLES, "reference": "the first run of each list"}
    for name, specs, reader in (("case2code", args.case2code, case2code_rows),
                                ("solverlearner", args.solverlearner, solverlearner_rows)):
        runs = _runs(specs)
        if len(runs) < 2:
            continue
        (ref_label, ref_dir), others = runs[0], runs[1:]
        ref = reader(ref_dir)
        loaded = {label: reader(path) for label, path in others}
        result[name] = {"reference": ref_label,
                        "runs": {label: str(path) for label, path in runs},
                        "vs": {label: compare(tok, ref, rows) for label, rows in loaded.items()}}
        # The yardstick: the other runs against the first of them (ours in fp32 against ours in bf16), a change
        # of numerics inside our own engine.
        if len(others) > 1:
            base = others[0][0]
            result[name]["vs"].update({f"{label} (ref {base})": compare(tok, loaded[base], loaded[label])
                                       for label, _ in others[1:]})
        print(f"\n{name} (reference {ref_label}):")
        print("| other | rows | identical | first divergence, tokens (min / median) | score ref | score other "
              "| other - ref [95% CI] | only ref / only other right |")
        print("|---|---|---|---|---|---|---|---|")
        for label, c in result[name]["vs"].items():
            d = c["first_divergence_tokens"]
            dtxt = "-" if d is None else f"{d['min']} / {d['median']:.0f}"
            print(f"| {label} | {c['rows']} | {c['identical_rows']} ({c['exact_agreement']:.2f}) | {dtxt} | "
                  f"{c['score_reference']:.3f} | {c['score_other']:.3f} | {c['difference']:+.3f} "
                  f"[{c['difference_ci95'][0]:+.3f}, {c['difference_ci95'][1]:+.3f}] | "
                  f"{c['only_reference_right']} / {c['only_other_right']} |")
        extra = [(label, c) for label, c in result[name]["vs"].items() if "matched_inputs" in c]
        if extra:
            print("\n| other | matched inputs, ref | other | other - ref [95% CI] | statuses ref | statuses other |")
            print("|---|---|---|---|---|---|")
            for label, c in extra:
                m = c["matched_inputs"]
                print(f"| {label} | {m['reference']:.3f} | {m['other']:.3f} | {m['difference']:+.3f} "
                      f"[{m['difference_ci95'][0]:+.3f}, {m['difference_ci95'][1]:+.3f}] | "
                      f"{c['statuses']['reference']} | {c['statuses']['other']} |")
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
