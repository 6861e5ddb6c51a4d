"""Compare two lm-eval output folders of the same multiple-choice task: per-request log-likelihoods and the metrics.

    python compare_lm_eval.py OUT_A OUT_B   -> one JSON object on stdout
"""
import glob
import json
import sys


def load(root: str) -> tuple[dict, dict]:
    results = json.load(open(sorted(glob.glob(f"{root}/**/results_*.json", recursive=True))[-1]))
    samples = {}
    for path in glob.glob(f"{root}/**/samples_*.jsonl", recursive=True):
        for line in open(path):
            s = json.loads(line)
            samples[s["doc_id"]] = [float(r[0][0]) for r in s["resps"]]
    return results["results"], samples


def main() -> None:
    (res_a, sam_a), (res_b, sam_b) = load(sys.argv[1]), load(sys.argv[2])
    diffs = [abs(x - y) for d in sam_a for x, y in zip(sam_a[d], sam_b[d], strict=True)]
    metrics = {task: {k: [res_a[task][k], res_b[task][k]] for k in res_a[task]
                      if k.split(",")[0] in ("acc", "acc_norm")} for task in res_a}
    print(json.dumps({"a": sys.argv[1], "b": sys.argv[2], "requests": len(diffs),
                      "max_abs_loglikelihood_diff": max(diffs), "metrics_a_b": metrics,
                      "same_docs": sorted(sam_a) == sorted(sam_b)}, indent=1))


if __name__ == "__main__":
    main()
