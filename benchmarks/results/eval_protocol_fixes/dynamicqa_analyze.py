"""Analysis behind README.md in this folder; it reads the run dirs the README's commands wrote (under /tmp here,
not committed). Run with the project's .venv python."""
import json, numpy as np
runs = {"A official (no stop, p_s all steps)": "/tmp/dqa/A_official", "B same samples, p_s kept tokens": "/tmp/dqa/B_kept_same_samples",
        "C old default (stop \\n, p_s kept)": "/tmp/dqa/C_old_default"}
def load(d):
    rows = {}
    for l in open(f"{d}/scores.jsonl"):
        r = json.loads(l); rows[r["id"]] = r
    return rows
data = {k: load(v) for k, v in runs.items()}
keys = list(runs)
print("| run | fact type | items | SE | CP |"); print("|---|---|---|---|---|")
for k in keys:
    s = json.load(open(runs[k] + "/summary.json"))["by_type"]
    for t in ("static", "temporal", "disputable"):
        print(f"| {k} | {t} | {s[t]['items']} | {s[t]['semantic_entropy']:.3f} | {s[t]['coherent_persuasion']:.3f} |")
rng = np.random.default_rng(0)
A, B = data[keys[0]], data[keys[1]]
print("\npaired CP difference A - B (same tokens; only the EOS step differs), 95% bootstrap over items:")
for t in ("static", "temporal", "disputable", None):
    ids = [i for i in A if (t is None or i.startswith(t)) and A[i].get("coherent_persuasion") is not None and B[i].get("coherent_persuasion") is not None]
    d = np.array([A[i]["coherent_persuasion"] - B[i]["coherent_persuasion"] for i in ids])
    bs = [rng.choice(d, len(d)).mean() for _ in range(5000)]
    rel = np.mean([A[i]["coherent_persuasion"] for i in ids]) / np.mean([B[i]["coherent_persuasion"] for i in ids])
    print(f"  {t or 'all'}: n={len(d)} mean {d.mean():+.3f} [{np.percentile(bs,2.5):+.3f}, {np.percentile(bs,97.5):+.3f}], A/B {rel:.3f}")
# answer lengths
for k in keys[:1]:
    lens = []
    for l in open(runs[k] + "/samples.jsonl"):
        r = json.loads(l)
        for s in r["samples"]:
            lens.append(len(s["token_logprobs"]))
    lens = np.array(lens); print(f"\n{k}: answer tokens per sample mean {lens.mean():.2f}, median {np.median(lens)}, share <=3 tokens {np.mean(lens<=3):.2f}, share hitting 20 {np.mean(lens>=20):.2f}")
ex = [json.loads(l) for l in open(runs[keys[0]] + "/samples.jsonl")][:6]
for r in ex[:4]:
    print(r["id"], r["condition"], "gold:", r["gold"], "| answers:", [s["text"] for s in r["samples"][:4]])
