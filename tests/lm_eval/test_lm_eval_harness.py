"""lm-evaluation-harness on our checkpoints: `python -m evals.lm_eval_harness --model patchtrain` gives the
numbers the same model gives when asked directly, and lm-eval's `local-completions` against `evals.serve`
gives them too. The task is the repo's own 10-question multiple-choice set over a local JSON Lines file."""
import glob
import json
import os
import threading
from pathlib import Path

import jax
import numpy as np
import pytest

pytest.importorskip("lm_eval", reason="needs the lmeval extra (scripts/setup.sh --lmeval)")

from evals.backends.jax_backend import load_jax_model  # noqa: E402
from evals.model_api import Sampling  # noqa: E402
from patch_training.errors import UserError  # noqa: E402
from patch_training.model import ModelConfig, init_params  # noqa: E402
from patch_training.params_io import save_params  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TASKS = REPO / "evals" / "lm_eval_tasks"
QUESTIONS = TASKS / "patchtrain_mc" / "questions.jsonl"
CFG = ModelConfig(vocab_size=264, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                  max_seq_len=128)
TOL = 1e-5


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_params(tmp_path_factory.mktemp("lm_eval") / "ckpt", init_params(CFG, jax.random.key(3)), CFG,
                       {"kind": "byte"})


@pytest.fixture(scope="module")
def model(checkpoint):
    """Opened as the harness opens it (the one checkpoint opener), batch 4."""
    return load_jax_model(checkpoint=str(checkpoint), batch_size=4)


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.chdir(REPO)                         # the task's data path is relative to the repository root
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # `json` is a packaged builder: nothing to fetch
    # Each CLI run would index lm-eval's ~200 built-in task folders first (~9 s on 2 cores); these runs
    # need only the repo's task, so the CLI's task manager skips the built-in ones.
    import lm_eval.tasks
    full = lm_eval.tasks.TaskManager

    class RepoTasksOnly(full):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **{**kwargs, "include_defaults": False})

    monkeypatch.setattr(lm_eval.tasks, "TaskManager", RepoTasksOnly)

    def no_fork():   # a fork of a process running JAX's threads can deadlock (evals/lm_eval_harness.py)
        raise AssertionError("the harness forked the JAX process")

    monkeypatch.setattr(os, "fork", no_fork)


def _instances(kind, args):
    from lm_eval.api.instance import Instance
    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def _direct(model):
    """The task's requests built by hand and scored by JaxModel.loglikelihood; acc and acc_norm by argmax."""
    docs = [json.loads(line) for line in QUESTIONS.read_text().splitlines()]
    requests = [(f"Question: {d['question']}\nAnswer:", " " + c) for d in docs for c in d["choices"]]
    lls = iter(model.loglikelihood(requests))
    by_request, acc, acc_norm = {}, [], []
    for d in docs:
        scores = np.array([next(lls) for _ in d["choices"]])
        for c, s in zip(d["choices"], scores):
            by_request[(f"Question: {d['question']}\nAnswer:", " " + c)] = float(s)
        acc.append(float(np.argmax(scores) == d["answer"]))
        acc_norm.append(float(np.argmax(scores / np.array([len(c) for c in d["choices"]])) == d["answer"]))
    return by_request, float(np.mean(acc)), float(np.mean(acc_norm))


def _run_harness(argv, out, capsys):
    """The CLI in this process; returns (printed table, results, {(context, continuation): loglikelihood})."""
    from evals.lm_eval_harness import main
    assert main([*argv, "--include_path", str(TASKS), "--tasks", "patchtrain_mc", "--output_path", str(out),
                 "--log_samples"]) == 0
    table = "\n".join(line for line in capsys.readouterr().out.splitlines() if line.startswith("|"))
    (results,) = glob.glob(f"{out}/**/results_*.json", recursive=True)
    (samples,) = glob.glob(f"{out}/**/samples_patchtrain_mc_*.jsonl", recursive=True)
    lls = {}
    for line in Path(samples).read_text().splitlines():
        s = json.loads(line)
        for args, resp in zip(s["arguments"].values(), s["resps"]):
            lls[(args["arg_0"], args["arg_1"])] = float(resp[0][0])
    return table, json.loads(Path(results).read_text())["results"]["patchtrain_mc"], lls


def _compare(got_lls, got, expected):
    want_lls, acc, acc_norm = expected
    assert set(got_lls) == set(want_lls) and len(want_lls) == 38
    delta = max(abs(got_lls[k] - want_lls[k]) for k in want_lls)
    assert delta <= TOL, delta
    assert got["acc,none"] == acc and got["acc_norm,none"] == acc_norm
    return delta


def test_in_process_and_through_the_server_give_the_direct_numbers(checkpoint, model, tmp_path, offline, capsys):
    expected = _direct(model)
    table, got, lls = _run_harness(["--model", "patchtrain", "--model_args", f"checkpoint={checkpoint},batch_size=8"],
                                   tmp_path / "in_process", capsys)
    delta_in = _compare(lls, got, expected)
    assert "|patchtrain_mc|" in table and "acc_norm" in table and "Metric" in table   # lm-eval's own table

    # The same task through evals.serve: lm-eval's client counts context tokens with an HF tokenizer, so the
    # test gives it one with our byte vocabulary (ids = bytes + 3) and sends token-id prompts, 4 per request.
    pytest.importorskip("transformers")
    from evals.backends.openai_server import make_server
    server = make_server(model, port=0, model_name="tiny")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        table_http, got_http, lls_http = _run_harness(
            ["--model", "local-completions", "--batch_size", "4", "--model_args",
             f"model=tiny,base_url=http://127.0.0.1:{port}/v1/completions,tokenizer_backend=huggingface,"
             f"tokenizer={_byte_hf_tokenizer(tmp_path / 'tok')},max_length=128"],
            tmp_path / "http", capsys)
    finally:
        server.shutdown()
        server.server_close()
    delta_http = _compare(lls_http, got_http, expected)
    print(f"\nin process (max |d ll| {delta_in:.2e}):\n{table}\nthrough evals.serve (max |d ll| {delta_http:.2e}):\n"
          f"{table_http}")


def _byte_hf_tokenizer(path: Path) -> str:
    """An HF fast tokenizer whose ids are our byte vocabulary's: byte b -> id b + 3, 0 pad, 1 EOS, 2 UNK."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # GPT-2's printable stand-in for each byte, which the ByteLevel pre-tokenizer and decoder use.
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    extra = iter(range(256, 512))
    char = {b: chr(b if b in printable else next(extra)) for b in range(256)}
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{char[b]: b + 3 for b in range(256)}}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    assert hf("Question: 2 + 3?\n", add_special_tokens=False).input_ids == [b + 3 for b in b"Question: 2 + 3?\n"]
    hf.save_pretrained(str(path))
    return str(path)


def test_loglikelihood_is_greedy_from_the_argmax(model):
    from evals.lm_eval_model import PatchTrainLM
    lm = PatchTrainLM(model=model)
    context = "def add(a, b):\n    return"
    (greedy,) = model.generate([context], 1, Sampling(max_new_tokens=6, temperature=0))
    ids = greedy[0].token_ids
    assert len(ids) >= 2
    ctx_ids = model.prompt_ids(context, chat=False)
    other = ids[:1] + [(ids[1] + 1) % CFG.vocab_size] + ids[2:]   # one token off the greedy path
    (lp, is_greedy), (_, other_greedy) = model.score_continuations([(ctx_ids, ids), (ctx_ids, other)])
    assert is_greedy is True and other_greedy is False
    assert lp == pytest.approx(sum(greedy[0].token_logprobs), abs=1e-4)   # the engine's own log-probs
    # Through the lm-eval class on text: a continuation the model would not write is not greedy.
    (ll, is_greedy), = lm.loglikelihood(_instances("loglikelihood", [(context, " a + b")]))
    assert ll == pytest.approx(model.loglikelihood([(context, " a + b")])[0], abs=TOL) and is_greedy is False


def test_loglikelihood_rolling_scores_every_token_once_in_windows_of_max_length(model):
    from evals.lm_eval_model import PatchTrainLM
    window = 16
    lm = PatchTrainLM(model=model, max_length=window)
    short, long = "x = 1\n", "def square(x):\n    return x * x\n\nprint(square(12))\n"
    got = lm.loglikelihood_rolling(_instances("loglikelihood_rolling", [(short,), (long,)]))
    prefix = model.vocab.start_ids()[0]
    for text, total in zip((short, long), got):
        ids = model.vocab.encode(text)
        seq, n = [prefix] + ids, len(ids)
        pairs = []
        for i in range(n):   # token i with the context its window gives it (lm-eval's LM.loglikelihood_rolling doc)
            chunk = i // window
            lo = chunk * window if (chunk + 1) * window <= n or n <= window else n - window
            pairs.append((seq[lo:i + 1], [ids[i]]))
        assert len(pairs) == n and all(len(c) <= window for c, _ in pairs)
        assert total == pytest.approx(sum(lp for lp, _ in model.score_continuations(pairs)), abs=TOL)
    # A document that fits one window is the log-likelihood of the whole text after the prefix token.
    assert got[0] == pytest.approx(model.loglikelihood([("", short)])[0], abs=TOL)


def test_generate_until_stops_at_the_until_strings(model):
    from evals.lm_eval_model import PatchTrainLM
    lm = PatchTrainLM(model=model)
    prompt = "Question: What is 2 + 3?\nAnswer:"
    (free,) = model.generate([prompt], 1, Sampling(max_new_tokens=24, temperature=0))
    text = free[0].text
    assert len(text) >= 6, text    # the tiny model writes enough bytes to cut in the middle
    one, two = text[3], text[4:6]  # a one-token stop (stops inside the decode loop) and a two-token one
    out = lm.generate_until(_instances("generate_until", [
        (prompt, {"until": [one], "max_gen_toks": 24}),
        (prompt, {"until": [two], "max_gen_toks": 24, "do_sample": False}),
        (prompt, {"until": [], "max_gen_toks": 5, "temperature": 0}),
    ]))
    assert out == [text[:text.index(one)], text[:text.index(two)], model.vocab.decode(free[0].token_ids[:5])]


def test_generation_settings_we_cannot_honour_are_refused(model):
    from evals.lm_eval_model import PatchTrainLM
    lm = PatchTrainLM(model=model)
    with pytest.raises(UserError, match="gen_kwargs num_beams not supported"):
        lm.generate_until(_instances("generate_until", [("Q:", {"until": ["\n"], "num_beams": 4})]))
    with pytest.raises(UserError, match="gen_kwargs repetition_penalty not supported"):
        lm.generate_until(_instances("generate_until", [("Q:", {"repetition_penalty": 1.3})]))
    assert lm.generate_until(_instances("generate_until", [("Q:", {"max_gen_toks": 2, "num_beams": 1})]))


def test_bad_model_args_are_one_line_errors(checkpoint, tmp_path):
    from evals.lm_eval_model import PatchTrainLM
    with pytest.raises(UserError, match="not found"):
        PatchTrainLM(checkpoint=str(tmp_path / "missing"))
    with pytest.raises(UserError, match="unknown model_args colour"):
        PatchTrainLM.create_from_arg_string(f"checkpoint={checkpoint},colour=red", {"batch_size": 1})
    with pytest.raises(UserError, match="decode_dtype"):
        PatchTrainLM(checkpoint=str(checkpoint), decode_dtype="float8")
    with pytest.raises(UserError, match="exactly one of checkpoint"):
        PatchTrainLM()
    # lm-eval's own --batch_size (default 1) arrives beside the model args: the model arg wins.
    lm = PatchTrainLM.create_from_arg_string(f"checkpoint={checkpoint},batch_size=8", {"batch_size": 1})
    assert lm.model.batch_size == 8 and lm.max_length == CFG.max_seq_len


def test_decode_dtype_bfloat16_scores_in_bfloat16(checkpoint, model):
    from evals.lm_eval_model import PatchTrainLM
    lm = PatchTrainLM.create_from_arg_string(f"checkpoint={checkpoint},decode_dtype=bfloat16,batch_size=4")
    assert lm.model.decoder.compute_dtype == "bfloat16"   # scoring runs the decoder's forward, so bf16 too
    assert lm.model.fingerprint != model.fingerprint      # other numerics, so other cache keys
    request = [("Question: What is 2 + 3?\nAnswer:", " 5")]
    (bf16,), (fp32,) = lm.model.loglikelihood(request), model.loglikelihood(request)
    assert bf16 != fp32 and bf16 == pytest.approx(fp32, rel=0.05)


def test_local_completions_with_the_servers_tokenizer_and_local_chat_completions(model):
    """lm-eval finds /tokenizer_info and /tokenize at the server root by itself (no HF tokenizer given) and scores
    as the model does in process; `local-chat-completions` generates what the model writes in process."""
    from lm_eval.models.api_models import JsonChatStr
    from lm_eval.models.openai_completions import LocalChatCompletion, LocalCompletionsAPI

    from evals.backends.jax_backend import JaxModel
    from evals.backends.text_vocab import byte_text_vocab
    from tests.support.serving import CHAT_TEMPLATE, running_server

    vocab = byte_text_vocab()
    vocab.chat_template = CHAT_TEMPLATE
    chat_model = JaxModel(model.config, model.params, vocab, batch_size=4)
    pairs = [("Question: What is 2 + 3?\nAnswer:", " 5"), ("def add(a, b):", "\n    return a + b"), ("x =", " 1")]
    messages = [{"role": "user", "content": "What is 2 + 3?"}]
    with running_server(chat_model, model_name="tiny") as (_, url):
        lm = LocalCompletionsAPI(base_url=f"{url}/completions", model="tiny", max_length=128, batch_size=2)
        assert lm.tokenizer_backend == "remote"                     # auto-detected from /tokenizer_info
        got = lm.loglikelihood(_instances("loglikelihood", pairs), disable_tqdm=True)
        np.testing.assert_allclose([ll for ll, _ in got], model.loglikelihood(pairs), atol=TOL)

        chat = LocalChatCompletion(base_url=f"{url}/chat/completions", model="tiny", max_length=128)
        (text,) = chat.generate_until(_instances("generate_until", [
            (JsonChatStr(json.dumps(messages)), {"until": [], "max_gen_toks": 8, "do_sample": False})]),
            disable_tqdm=True)
    (want,) = chat_model.generate(["What is 2 + 3?"], 1, Sampling(max_new_tokens=8, chat=True))[0]
    assert text == want.text and len(want.token_ids) == 8   # a whole answer, not an empty one
