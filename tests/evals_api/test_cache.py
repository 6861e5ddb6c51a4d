"""The generation cache: a killed run redoes only what is missing; nothing cached is lost."""
import json
import os
import subprocess
import sys
from pathlib import Path

from evals.gen_cache import CACHE_FILE, CachedModel, sample_key
from evals.model_api import Sampling, ScriptedModel

ROOT = Path(__file__).resolve().parents[2]
SAMPLING = Sampling(max_new_tokens=8, temperature=0.7, seed=5)
PROMPTS = [f"prompt {i}" for i in range(12)]
FINGERPRINT = ScriptedModel(None, name="answers").fingerprint      # the child's model and the resumed one's
# The child answers the first three prompts, then says so on stdout and blocks for good on the fourth: the
# test kills it on that line, not after a guessed time. With chunk=1 every prompt's samples are on disk before
# the next prompt is asked, so at the kill the cache holds exactly the first three prompts' six samples.
CHILD = """
import sys, threading
from evals.gen_cache import CachedModel
from evals.model_api import Sampling, ScriptedModel
def answer(p, j):
    if p == "prompt 3":
        print("blocked on prompt 3", flush=True)
        threading.Event().wait()
    return p.upper() + f"#{j}"
m = CachedModel(ScriptedModel(answer, name="answers"), sys.argv[1], chunk=1)
m.generate([f"prompt {i}" for i in range(12)], 2, Sampling(max_new_tokens=8, temperature=0.7, seed=5))
print("finished", flush=True)
"""


def test_resume_after_kill(tmp_path):
    cache_dir = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(cache_dir)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
    finally:
        proc.kill()
    _, err = proc.communicate(timeout=60)
    assert line == "blocked on prompt 3\n", (line, err[-2000:])
    path = cache_dir / CACHE_FILE
    done_before = [json.loads(l) for l in path.read_bytes().splitlines()]
    assert sorted(e["completion"]["text"] for e in done_before) == [f"PROMPT {i}#{j}" for i in range(3) for j in range(2)]
    # What a kill between a prompt's two samples leaves (the cache writes one sample at a time): prompt 3's
    # first sample, marked so that the test can tell it from a regenerated one; then a record torn by the kill.
    half_done = {"key": sample_key(FINGERPRINT, "prompt 3", SAMPLING, 0), "kind": "gen", "model": FINGERPRINT,
                 "sample": 0, "completion": {"text": "PROMPT 3#0 (before the kill)"}, "dist": None}
    with path.open("ab") as f:
        f.write((json.dumps(half_done) + "\n").encode())
        f.write(b'{"key": "abc", "kind": "gen", "compl')
    done_before.append(half_done)

    asked = []

    def respond(p, j):
        asked.append((p, j))
        return p.upper() + f"#{j}"

    model = CachedModel(ScriptedModel(respond, name="answers"), cache_dir, chunk=3)
    assert model.cache.torn_lines == 1
    out = model.generate(PROMPTS, 2, SAMPLING)
    expected = [[p.upper() + f"#{j}" for j in range(2)] for p in PROMPTS]
    expected[3][0] = half_done["completion"]["text"]                # a cached sample is kept, not replaced
    assert [[c.text for c in row] for row in out] == expected
    # exactly the prompts the killed run had not finished are asked (the half-done one whole), nothing twice
    assert asked == [(p, j) for p in PROMPTS[3:] for j in range(2)]
    model.close()
    # the cached lines are all still there, and a third run needs the model for nothing
    lines = path.read_bytes().splitlines()
    assert all(l in lines for l in (json.dumps(e).encode() for e in done_before))
    assert len(lines) == 1 + 24                                      # the torn line, then one per sample
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
