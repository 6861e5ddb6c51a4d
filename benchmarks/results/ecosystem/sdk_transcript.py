"""A transcript of the `openai` Python SDK against a running `evals.serve` (or any OpenAI-compatible server).

    .venv/bin/python benchmarks/results/ecosystem/sdk_transcript.py --base_url http://127.0.0.1:8977/v1 --model smollm2

Each call is printed as the Python that made it and what came back (trimmed), so the file it writes reads as a
session a user would have: completions with log-probs, `n` + `seed`, `stop`, chat, streaming completions and
chat (with per-chunk log-probs), `usage`, and the SDK's own exception types for a 400 and a 404.
"""
from __future__ import annotations

import argparse
import json
import sys

import openai


def show(title: str, code: str, value) -> None:
    print(f"\n### {title}\n\n```python\n{code}\n```\n\n```")
    print(value if isinstance(value, str) else json.dumps(value, indent=1, ensure_ascii=False)[:1800])
    print("```", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base_url", required=True)
    ap.add_argument("--model", required=True)
    args = ap.parse_args(argv)
    client = openai.OpenAI(base_url=args.base_url, api_key="unused", max_retries=0, timeout=300)
    m = args.model
    print(f"# `openai` {openai.__version__} against {args.base_url} (model `{m}`)")

    show("models", "client.models.list()", [x.id for x in client.models.list().data])

    r = client.completions.create(model=m, prompt="The capital of France is", max_tokens=8, temperature=0,
                                  logprobs=3)
    show("completion, greedy, logprobs=3",
         'client.completions.create(model=m, prompt="The capital of France is", max_tokens=8, temperature=0, logprobs=3)',
         {"text": r.choices[0].text, "finish_reason": r.choices[0].finish_reason,
          "tokens": r.choices[0].logprobs.tokens, "token_logprobs": r.choices[0].logprobs.token_logprobs,
          "top_logprobs[0]": r.choices[0].logprobs.top_logprobs[0], "usage": r.usage.model_dump()})

    r = client.completions.create(model=m, prompt="def add(a, b):", max_tokens=24, temperature=0.8, n=2, seed=7,
                                  stop=["\n\n"])
    r2 = client.completions.create(model=m, prompt="def add(a, b):", max_tokens=24, temperature=0.8, n=2, seed=7,
                                   stop=["\n\n"])
    show("n=2 with a seed, a stop string; the same call twice",
         'client.completions.create(model=m, prompt="def add(a, b):", max_tokens=24, temperature=0.8, n=2, seed=7, stop=["\\n\\n"])',
         {"choices": [[c.text, c.finish_reason] for c in r.choices],
          "second call identical": [c.text for c in r.choices] == [c.text for c in r2.choices],
          "usage": r.usage.model_dump()})

    msgs = [{"role": "user", "content": "Write a Python function that adds two numbers."}]
    r = client.chat.completions.create(model=m, messages=msgs, max_tokens=60, temperature=0)
    show("chat", "client.chat.completions.create(model=m, messages=[{'role': 'user', 'content': 'Write a Python "
         "function that adds two numbers.'}], max_tokens=60, temperature=0)",
         {"content": r.choices[0].message.content, "finish_reason": r.choices[0].finish_reason,
          "usage": r.usage.model_dump()})
    whole = r.choices[0].message.content

    chunks = list(client.chat.completions.create(model=m, messages=msgs, max_tokens=60, temperature=0, stream=True,
                                                 logprobs=True, top_logprobs=2))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    first = next(c for c in chunks if c.choices and c.choices[0].logprobs and c.choices[0].logprobs.content)
    show("chat, stream=True with logprobs (the same request)",
         "client.chat.completions.create(..., stream=True, logprobs=True, top_logprobs=2)",
         {"chunks": len(chunks), "first chunks' deltas": [c.choices[0].delta.content for c in chunks[:6] if c.choices],
          "first chunk with logprobs": first.choices[0].logprobs.model_dump()["content"][:2],
          "streamed text == non-streamed": text == whole})

    chunks = list(client.completions.create(model=m, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0,
                                            stream=True))
    show("completion, stream=True", 'client.completions.create(model=m, prompt="1, 2, 3, 4,", max_tokens=12, '
         'temperature=0, stream=True)', [c.choices[0].text for c in chunks if c.choices])

    for title, call in (("a 400: max_tokens below zero",
                         lambda: client.completions.create(model=m, prompt="x", max_tokens=-1)),
                        ("a 404: an unknown model",
                         lambda: client.completions.create(model="no-such-model", prompt="x", max_tokens=1))):
        try:
            call()
            show(title, "", "no error (unexpected)")
        except openai.APIStatusError as e:
            show(title, "", f"{type(e).__name__} (status {e.status_code}): {e.message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
