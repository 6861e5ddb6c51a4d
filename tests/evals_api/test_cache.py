"""The generation cache: a killed run redoes only what is missing; nothing cached is lost."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from evals.gen_cache import CACHE_FILE, CachedModel, sample_key
from evals.model_api import Sampling, ScriptedModel

ROOT = Path(__file__).resolve().parents[2]
SAMPLING = Sampling(max_new_tokens=8, temperature=0.7, seed=5)
PROMPTS = [f"prompt {i}" for i in range(12)]
# The child answers the first three prompts and then hangs on the fourth until it is killed: with chunk=1 the
# cache holds exactly those three prompts' six samples at the kill, whatever the machine's speed.
CHILD = """
import sys, time
from evals.gen_cache import CachedModel
from evals.model_api import Sampling, ScriptedModel
def slow(p, j):
    if int(p.split()[1]) >= 3:
        time.sleep(3600)
    return p.upper() + f"#{j}"
m = CachedModel(ScriptedModel(slow, name="answers"), sys.argv[1], chunk=1)
m.generate([f"prompt {i}" for i in range(12)], 2, Sampling(max_new_tokens=8, temperature=0.7, seed=5))
print("finished")
"""


def test_resume_after_kill(tmp_path):
    cache_dir = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(cache_dir)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE)
    path = cache_dir / CACHE_FILE
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.is_file() and len(path.read_bytes().splitlines()) >= 6:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = [json.loads(l) for l in path.read_bytes().splitlines()]
    assert len(done_before) == 6, "the child should have been killed while hanging on its fourth prompt"
    with path.open("ab") as f:                      # a record torn by the kill
        f.write(b'{"key": "abc", "kind": "gen", "compl')

    asked = []

    def respond(p, j):
        asked.append((p, j))
        return p.upper() + f"#{j}"

    model = CachedModel(ScriptedModel(respond, name="answers"), cache_dir, chunk=3)
    assert model.cache.torn_lines == 1
    out = model.generate(PROMPTS, 2, SAMPLING)
    assert [[c.text for c in row] for row in out] == [[p.upper() + f"#{j}" for j in range(2)] for p in PROMPTS]
    cached_per_prompt = {}
    for e in done_before:
        p = e["completion"]["text"].split("#")[0]
        cached_per_prompt[p] = cached_per_prompt.get(p, 0) + 1
    # exactly the prompts that were not complete are asked again (a half-done prompt is regenerated whole)
    assert {p.upper() for p, _ in asked} == {p.upper() for p in PROMPTS if cached_per_prompt.get(p.upper(), 0) < 2}
    model.close()
    # the cached lines are all still there, and a third run needs the model for nothing
    lines = path.read_bytes().splitlines()
    assert all(l in lines for l in (json.dumps(e).encode() for e in done_before))
    again = CachedModel(ScriptedModel(lambda p, j: 1 / 0, name="answers"), cache_dir)
    assert [[c.text for c in row] for row in again.generate(PROMPTS, 2, SAMPLING)] == [[c.text for c in r] for r in out]
    assert again.misses == 0 and again.hits == 24


def test_key_covers_seed_and_sampling():
    fp = "m"
    base = sample_key(fp, "p", SAMPLING, 0)
    assert base != sample_key(fp, "p", SAMPLING, 1)
    assert base != sample_key(fp, "p", Sampling(max_new_tokens=8, temperature=0.7, seed=6), 0)
    assert base != sample_key(fp, "p", Sampling(max_new_tokens=8, temperature=0.7, seed=5, return_dist=True), 0)
    assert base != sample_key("other", "p", SAMPLING, 0)
    assert base == sample_key(fp, "p", Sampling(max_new_tokens=8, temperature=0.7, seed=5), 0)


def test_distributions_and_loglikelihoods_are_cached(tmp_path, jax_model):
    cached = CachedModel(jax_model, tmp_path / "c")
    s = Sampling(max_new_tokens=4, return_dist=True)
    first = cached.generate(["abc"], 1, s)[0][0]
    ll = cached.loglikelihood([("ab", "c")])
    cached.close()
    again = CachedModel(jax_model, tmp_path / "c")
    second = again.generate(["abc"], 1, s)[0][0]
    assert again.misses == 0 and second.text == first.text
    assert (second.mean_dist == first.mean_dist).all() and second.mean_dist.shape == (jax_model.config.vocab_size,)
    assert again.loglikelihood([("ab", "c")]) == ll
