"""What asking llama-cpp-python's server for log-probs costs: one Case2Code chat prompt, up to 512 greedy tokens,
with and without `logprobs: 1` (run from the repo root with .venv/bin/python, under /work/quiet; needs /tmp/smol135,
the GGUF's import). Prints {"with_logprobs": [[tokens/s, tokens], ...], "without": [...]}."""
import json, time, urllib.request, sys
from pathlib import Path
REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
from evals.backends.llamacpp_server import LlamaCppServer
from evals.backends.text_vocab import from_hf_dir
from evals.case2code.protocol import eval_prompt
row = json.loads(open(REPO.parent / "shared/data/case2code/test.jsonl").readline())
text = from_hf_dir("/tmp/smol135").render_chat([{"role": "user", "content": eval_prompt(row)}])
with LlamaCppServer(REPO / ".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf", n_ctx=4096) as s:
    def once(lp):
        body = {"prompt": text, "max_tokens": 512, "temperature": 0.0, "repeat_penalty": 1.0, "min_p": 0.0, "top_k": 0}
        if lp:
            body["logprobs"] = 1
        req = urllib.request.Request(s.url + "/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        t = time.perf_counter(); r = json.loads(urllib.request.urlopen(req, timeout=600).read()); dt = time.perf_counter() - t
        return r["usage"]["completion_tokens"] / dt, r["usage"]["completion_tokens"]
    once(False)
    out = {"with_logprobs": [], "without": []}
    for _ in range(2):
        out["without"].append(once(False)); out["with_logprobs"].append(once(True))
    print(json.dumps(out))
