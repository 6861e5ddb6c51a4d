"""Analysis behind README.md in this folder; it reads the run dirs the README's commands wrote (under /tmp here,
not committed). Run with the project's .venv python."""
import json, numpy as np
def load(m):
    return {(r["id"], r["setting"]): r for r in map(json.loads, open(f"/tmp/slreal/{m}/judged.jsonl"))}
b, a = load("before"), load("after")
keys = sorted(b)
assert keys == sorted(a)
d = np.array([int(b[k]["parse_failure"]) - int(a[k]["parse_failure"]) for k in keys], float)
acc = np.array([int(a[k]["correct"]) - int(b[k]["correct"]) for k in keys], float)
rng = np.random.default_rng(0)
idx = rng.integers(0, len(keys), (10000, len(keys)))
for name, x in (("parse-failure rate, before - after", d), ("accuracy, after - before", acc)):
    bs = x[idx].mean(1)
    print(f"{name}: {x.mean():+.3f} [{np.percentile(bs, 2.5):+.3f}, {np.percentile(bs, 97.5):+.3f}] over {len(keys)} prompts")
