"""evals.generate end to end on a tiny params checkpoint with the byte vocabulary."""
import json

import jax
import pytest

from evals.decoding import Decoder
from evals.generate import main
from patch_training.errors import UserError
from patch_training.model import ModelConfig, init_params
from patch_training.params_io import save_params

CFG = ModelConfig(vocab_size=264, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
                  num_kv_heads=2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    params = init_params(CFG, jax.random.key(3))
    return save_params(tmp_path_factory.mktemp("gen") / "ckpt", params, CFG, {"kind": "byte"}), params


def test_generate_cli_writes_samples(tmp_path, checkpoint, capsys):
    ckpt, params = checkpoint
    prompts = tmp_path / "in.jsonl"
    prompts.write_text("\n".join([
        json.dumps({"id": "a", "text": "def f(x):"}),
        "{not json",
        json.dumps({"id": 7, "token_ids": [10, 20, 30]}),
        json.dumps({"id": "b"}),
    ]) + "\n")
    out = tmp_path / "out.jsonl"
    rc = main(["--checkpoint", str(ckpt), "--prompts", str(prompts), "--out", str(out),
               "--max_new_tokens", "5", "--num_samples", "2", "--temperature", "0.8", "--top_k", "50",
               "--seed", "1"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "skipped 2 bad prompt line(s)" in err and "line 2" in err and "line 4" in err
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", 7]
    for r in rows:
        assert len(r["samples"]) == 2
        for s in r["samples"]:
            assert set(s) >= {"token_ids", "text", "logprobs"}
            assert len(s["logprobs"]) == len(s["token_ids"]) <= 5
            assert all(lp <= 0 for lp in s["logprobs"])
    # Greedy through the CLI equals the library call.
    main(["--checkpoint", str(ckpt), "--prompts", str(prompts), "--out", str(out), "--max_new_tokens", "6"])
    greedy = [json.loads(line) for line in out.read_text().splitlines()][1]["samples"][0]["token_ids"]
    expected = Decoder(CFG, params).generate([[10, 20, 30]], max_new_tokens=6, stop_tokens=[1])
    assert greedy == expected[0][0].token_ids


def test_generate_cli_bad_input(tmp_path, checkpoint):
    ckpt, _ = checkpoint
    prompts = tmp_path / "in.jsonl"
    prompts.write_text(json.dumps({"id": 1, "token_ids": [5, 999]}) + "\n")
    with pytest.raises(UserError, match="outside the vocabulary"):
        main(["--checkpoint", str(ckpt), "--prompts", str(prompts), "--out", str(tmp_path / "o.jsonl")])
    assert not (tmp_path / "o.jsonl").exists()
    with pytest.raises(UserError, match="checkpoint directory not found"):
        main(["--checkpoint", str(tmp_path / "missing"), "--prompts", str(prompts), "--out", str(tmp_path / "o")])
    with pytest.raises(UserError, match="top_p"):
        main(["--checkpoint", str(ckpt), "--prompts", str(prompts), "--out", str(tmp_path / "o"), "--top_p", "0"])
