"""`evals.serve` as a real client meets it: the `openai` SDK (completions, chat, streaming, n, stop, seed,
log-probs, usage, the SDK's own error types), concurrent requests in one continuous batch, cancellation of
requests whose client left, a full queue, and bad requests that leave the server serving. One server for
the module, over the tiny byte model with a chat template."""
import concurrent.futures
import contextlib
import json
import time

import numpy as np
import pytest

from evals.model_api import Sampling
from tests.support.serving import (CHAT_TEMPLATE, health, held, post_json, raw_request, read_reply, running_server,
                                   wait_for)

openai = pytest.importorskip("openai")

PROMPT = "def add(a, b):"


@pytest.fixture(scope="module")
def model(tiny_params):
    from evals.backends.jax_backend import JaxModel
    from evals.backends.text_vocab import byte_text_vocab
    from tests.evals_api.conftest import CFG

    vocab = byte_text_vocab()
    vocab.chat_template = CHAT_TEMPLATE
    return JaxModel(CFG, tiny_params, vocab, batch_size=4)


@pytest.fixture(scope="module")
def served(model):
    with running_server(model, model_name="tiny", rows=4, context=256, chunk_steps=8) as (server, url):
        yield server, url


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=served[1], api_key="unused", max_retries=0, timeout=60)


@contextlib.contextmanager
def slowed(engine, seconds: float):
    """Every engine step takes at least `seconds`, so a long request is surely still decoding when we act."""
    step = engine.step

    def slow():
        time.sleep(seconds)
        return step()

    engine.step = slow
    try:
        yield
    finally:
        del engine.step


def test_completions_equal_in_process_with_logprobs_n_seed_stop_usage(client, model):
    local = model.generate([PROMPT], 1, Sampling(max_new_tokens=12))[0][0]
    # Token ids as keys: several byte tokens decode to the same (empty) text and would collide in the dicts.
    r = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=12, temperature=0, logprobs=3,
                                  extra_body={"return_tokens_as_token_ids": True})
    (c,) = r.choices
    assert c.text == local.text and c.finish_reason == local.finish_reason == "length"
    assert c.logprobs.tokens == [f"token_id:{t}" for t in local.token_ids]
    np.testing.assert_allclose(c.logprobs.token_logprobs, local.token_logprobs, atol=1e-5)
    for chosen, lp, top in zip(c.logprobs.tokens, c.logprobs.token_logprobs, c.logprobs.top_logprobs):
        assert len(top) == 3 and max(top, key=top.get) == chosen and top[chosen] == pytest.approx(lp, abs=1e-5)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (len(model.prompt_ids(PROMPT, False)), 12)

    seeded = dict(model="tiny", prompt=PROMPT, max_tokens=8, temperature=1.0, n=3, seed=5)
    texts = [c.text for c in client.completions.create(**seeded).choices]
    assert texts == [c.text for c in client.completions.create(**seeded).choices] and len(set(texts)) == 3
    assert texts == [c.text for c in model.generate([PROMPT], 3, Sampling(max_new_tokens=8, temperature=1.0,
                                                                          seed=5))[0]]
    assert texts != [c.text for c in client.completions.create(**{**seeded, "seed": 6}).choices]

    stop = local.text[4]
    cut = client.completions.create(model="tiny", prompt=PROMPT, max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].text == local.text[:local.text.index(stop)] and cut.choices[0].finish_reason == "stop"


def test_streaming_completions_and_chat_give_the_same_text_as_one_answer(client):
    kw = dict(model="tiny", prompt=PROMPT, max_tokens=20, temperature=0)
    whole = client.completions.create(**kw).choices[0]
    chunks = list(client.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add 2 and 3."}]
    chat = client.chat.completions.create(model="tiny", messages=messages, max_tokens=16, temperature=0, n=2,
                                          logprobs=True, top_logprobs=2)
    assert [c.message.content for c in chat.choices] == [chat.choices[0].message.content] * 2   # greedy twice
    assert 2 * len(chat.choices[0].logprobs.content) == chat.usage.completion_tokens   # usage counts both
    assert all(len(t.top_logprobs) == 2 for t in chat.choices[0].logprobs.content)
    pieces = {0: "", 1: ""}
    finish = {}
    for chunk in client.chat.completions.create(model="tiny", messages=messages, max_tokens=16, temperature=0, n=2,
                                                stream=True):
        for choice in chunk.choices:
            pieces[choice.index] += choice.delta.content or ""
            finish[choice.index] = choice.finish_reason or finish.get(choice.index)
    assert pieces == {i: c.message.content for i, c in enumerate(chat.choices)}
    assert finish == {i: c.finish_reason for i, c in enumerate(chat.choices)}


def test_streamed_logprobs_are_the_whole_answers_token_by_token(client):
    """A stream's chunks carry the log-probs and top-k alternatives (recorded by the engine as it samples) of
    the tokens whose text they complete: joined, they are the non-streamed answer's, top-k within 1e-5."""
    kw = dict(model="tiny", prompt=PROMPT, max_tokens=20, temperature=0, logprobs=3,
              extra_body={"return_tokens_as_token_ids": True})
    whole = client.completions.create(**kw).choices[0].logprobs
    chunks = [c.choices[0] for c in client.completions.create(**kw, stream=True) if c.choices]
    assert len(chunks) > 1   # really streamed (chunk_steps 8 < 20 tokens)
    tokens = [t for c in chunks for t in c.logprobs.tokens]
    assert tokens == whole.tokens and len(tokens) == 20
    np.testing.assert_allclose([x for c in chunks for x in c.logprobs.token_logprobs], whole.token_logprobs, atol=1e-5)
    streamed_top = [top for c in chunks for top in c.logprobs.top_logprobs]
    for got, want, chosen in zip(streamed_top, whole.top_logprobs, tokens, strict=True):
        assert list(got) == list(want) and max(got, key=got.get) == chosen   # same ids, most likely first
        np.testing.assert_allclose(list(got.values()), list(want.values()), atol=1e-5)
    offsets = [o for c in chunks for o in c.logprobs.text_offset]
    assert offsets == whole.text_offset and offsets == sorted(offsets)

    messages = [{"role": "user", "content": "Add 2 and 3."}]
    chat_kw = dict(model="tiny", messages=messages, max_tokens=12, temperature=0, logprobs=True, top_logprobs=2)
    chat = client.chat.completions.create(**chat_kw).choices[0].logprobs.content
    streamed = [t for c in client.chat.completions.create(**chat_kw, stream=True) for ch in c.choices
                if ch.logprobs for t in ch.logprobs.content]
    assert [t.token for t in streamed] == [t.token for t in chat] and len(chat) == 12
    np.testing.assert_allclose([t.logprob for t in streamed], [t.logprob for t in chat], atol=1e-5)
    assert [[a.token for a in t.top_logprobs] for t in streamed] == [[a.token for a in t.top_logprobs] for t in chat]


def test_greedy_answer_does_not_depend_on_what_else_decodes(client, served):
    server, url = served
    greedy = dict(model="tiny", prompt="x = [1, 2", max_tokens=24, temperature=0, logprobs=0)
    alone = client.completions.create(**greedy).choices[0]
    others = [dict(prompt="def f(x):", max_tokens=30, temperature=1.0, seed=1, n=2),
              dict(prompt="import os\n", max_tokens=10, temperature=0.8, top_p=0.9),
              dict(prompt="while True:", max_tokens=17, temperature=1.2, extra_body={"top_k": 5})]
    server.scheduler.reset_peak()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        with held(server.scheduler):   # all five samples are placed in the same step
            futures = [pool.submit(client.completions.create, **greedy)] + [
                pool.submit(client.completions.create, model="tiny", **o) for o in others]
            wait_for(lambda: health(url)["waiting_rows"] == 5, what="five waiting samples")
        together = futures[0].result().choices[0]
        assert [len(f.result().choices) for f in futures[1:]] == [2, 1, 1]
    assert health(url)["peak_live_rows"] == 4    # rows of different requests decoded in one batch
    assert together.text == alone.text
    assert together.logprobs.token_logprobs == alone.logprobs.token_logprobs


def test_a_client_that_leaves_has_its_rows_cancelled(client, served):
    server, url = served
    body = dict(model="tiny", prompt=PROMPT, max_tokens=200, temperature=0, ignore_eos=True)
    before = health(url)
    with slowed(server.scheduler.engine, 0.05):       # 200 tokens in chunks of 8: > 1.2 s if not cancelled
        sock = raw_request(url, "POST", "/v1/completions", json.dumps(body).encode(),
                           {"Content-Type": "application/json"})
        wait_for(lambda: health(url)["live_rows"] == 1, what="the row to start")
        sock.close()
        t0 = time.monotonic()
        wait_for(lambda: health(url)["live_rows"] == 0, 5, "the row to leave")
        assert time.monotonic() - t0 < 1.0
        # The same mid-stream: the SDK's stream closed after its headers arrived.
        stream = client.completions.create(**{k: v for k, v in body.items() if k != "ignore_eos"}, stream=True,
                                           extra_body={"ignore_eos": True})
        wait_for(lambda: health(url)["live_rows"] == 1, what="the streamed row to start")
        stream.close()
        wait_for(lambda: health(url)["live_rows"] == 0, 5, "the streamed row to leave")
    after = health(url)
    assert after["cancelled_rows"] == before["cancelled_rows"] + 2
    assert after["finished_rows"] == before["finished_rows"]
    assert client.completions.create(model="tiny", prompt=PROMPT, max_tokens=3).choices[0].finish_reason == "length"


def test_a_full_queue_answers_429_with_retry_after(client, served):
    server, url = served
    old = server.scheduler.max_waiting
    server.scheduler.max_waiting = 2
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            with held(server.scheduler):
                first = pool.submit(client.completions.create, model="tiny", prompt=PROMPT, max_tokens=4, n=2)
                wait_for(lambda: health(url)["waiting_rows"] == 2, what="two waiting samples")
                with pytest.raises(openai.RateLimitError, match="server busy") as e:
                    client.completions.create(model="tiny", prompt=PROMPT, max_tokens=4)
                assert int(e.value.response.headers["retry-after"]) >= 1
                with pytest.raises(openai.BadRequestError, match="queues at most 2"):
                    client.completions.create(model="tiny", prompt=PROMPT, max_tokens=4, n=3)
            assert len(first.result().choices) == 2     # the accepted request is served once the queue moves
    finally:
        server.scheduler.max_waiting = old


def test_bad_requests_get_4xx_in_the_sdks_types_and_the_server_keeps_serving(client, served):
    server, url = served
    cases = [(openai.BadRequestError, "context of 256", dict(prompt=PROMPT, max_tokens=10_000)),
             (openai.BadRequestError, "context is 256", dict(prompt=[5] * 300)),
             (openai.BadRequestError, "'temperature' must be a number", dict(prompt=PROMPT, temperature="hot")),
             (openai.BadRequestError, "'n' must be an integer", dict(prompt=PROMPT, n=1.5)),
             (openai.BadRequestError, "presence_penalty", dict(prompt=PROMPT, presence_penalty=0.5)),
             (openai.BadRequestError, "'prompt' must be", dict(prompt={"text": "x"})),
             (openai.BadRequestError, "outside the vocabulary", dict(prompt=[1, 2, 99999])),
             (openai.NotFoundError, "not served here", dict(prompt=PROMPT, model="gpt-9"))]
    for error, message, kw in cases:
        with pytest.raises(error, match=message):
            client.completions.create(**{"model": "tiny", **kw})
    with pytest.raises(openai.BadRequestError, match="'messages'"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user"}])

    server.api_key = "sekret"
    try:
        with pytest.raises(openai.AuthenticationError, match="API key"):
            client.models.list()
        keyed = openai.OpenAI(base_url=url, api_key="sekret", max_retries=0)
        assert keyed.completions.create(model="tiny", prompt=PROMPT, max_tokens=2).usage.completion_tokens == 2
    finally:
        server.api_key = None

    assert post_json(url, "/v1/completions", b'{"prompt": "x", ')[:1] == (400,)
    status, _, body = post_json(url, "/v1/completions", b"[1, 2]")
    assert status == 400 and "JSON object" in body["error"]["message"]
    status, _, body = post_json(url, "/v1/completions", b"{}", {"Content-Length": "-4"})
    assert status == 400 and "Content-Length" in body["error"]["message"]
    old, server.max_body_bytes = server.max_body_bytes, 1000
    try:
        status, headers, body = post_json(url, "/v1/completions", {"prompt": "x" * 2000})
        assert status == 400 and "over this server's limit of 1000" in body["error"]["message"]
        assert headers.get("connection") == "close"
    finally:
        server.max_body_bytes = old
    assert post_json(url, "/v1/nothing", {})[0] == 404
    assert health(url)["status"] == "ok"
    assert client.completions.create(model="tiny", prompt=PROMPT, max_tokens=2).choices[0].finish_reason == "length"


def test_tokenizer_routes_at_the_root(served, model):
    _, url = served
    root = url[:-len("/v1")]
    status, _, info = read_reply(raw_request(root, "GET", "/tokenizer_info"))
    assert status == 200 and info["model_max_length"] == 256 and info["chat_template"] == CHAT_TEMPLATE
    assert "eos_token" in info
    status, _, tok = post_json(root, "/tokenize", {"prompt": "héllo", "add_special_tokens": False})
    assert status == 200 and tok["tokens"] == model.vocab.encode("héllo") and tok["count"] == 6
    status, _, back = post_json(root, "/detokenize", {"tokens": tok["tokens"]})
    assert status == 200 and back["prompt"] == "héllo"
    status, _, chat = post_json(root, "/tokenize", {"messages": [{"role": "user", "content": "hi"}]})
    assert chat["tokens"] == model.vocab.encode("<user>hi\n<assistant>")
    assert post_json(root, "/detokenize", {"tokens": ["a"]})[0] == 400


def test_an_answer_ended_by_eos_lists_it_last_so_echo_scoring_keeps_the_prompts_last_token(tiny_params):
    """lm-eval's `local-completions` scores with echo + `max_tokens: 1` and drops the last log-prob entry as the
    generated token. When the model's next token is EOS the answer generates nothing, so unless EOS is listed
    (as vLLM and OpenAI list it) the prompt's own last token would be the one dropped: a wrong score, seen on
    SmolLM2 as " 9" scored -0.86 instead of -4.98."""
    from evals.backends.jax_backend import JaxModel
    from evals.backends.text_vocab import byte_text_vocab
    from tests.evals_api.conftest import CFG

    probe = JaxModel(CFG, tiny_params, byte_text_vocab(), batch_size=2)
    prompts = [probe.vocab.encode("def add(a, b):"), probe.vocab.encode("x = 1")]
    # Make each prompt's greedy next token the end-of-sequence id of a second model over the same weights.
    greedy = {int(s["argmax"][-1]) for s in probe.score([p + [0] for p in prompts], [len(p) for p in prompts])}
    vocab = byte_text_vocab()
    vocab.eos_ids, vocab.eos_id = tuple(sorted(greedy)), min(greedy)
    stopping = JaxModel(CFG, tiny_params, vocab, batch_size=2)
    with running_server(stopping, model_name="tiny", rows=2, context=128, chunk_steps=4) as (_, url):
        status, _, body = post_json(url, "/v1/completions", {"model": "tiny", "prompt": prompts, "max_tokens": 1,
                                                              "echo": True, "logprobs": 1, "temperature": 0})
    assert status == 200, body
    for ids, choice in zip(prompts, body["choices"], strict=True):
        lp = choice["logprobs"]
        assert choice["finish_reason"] == "stop" and choice["text"] == vocab.decode(ids)   # EOS not in the text
        assert len(lp["tokens"]) == len(ids) + 1 and lp["tokens"][-1] == vocab.decode([greedy_of(probe, ids)])
        # Scoring the prompt's last token as a continuation, as lm-eval slices it ([ctxlen:-1]).
        (expected, _), = probe.score_continuations([(ids[:-1], ids[-1:])])
        assert sum(lp["token_logprobs"][len(ids) - 1:-1]) == pytest.approx(expected, abs=1e-5)
        assert lp["token_logprobs"][-1] == pytest.approx(
            probe.score([ids + [greedy_of(probe, ids)]], [len(ids)])[0]["logprobs"][-1], abs=1e-5)


def greedy_of(model, ids: list[int]) -> int:
    return int(model.score([ids + [0]], [len(ids)])[0]["argmax"][-1])
