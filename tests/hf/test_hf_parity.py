"""HF interop against transformers' own PyTorch LlamaForCausalLM (CPU, random tiny configs)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from evals.decoding import Decoder  # noqa: E402
from patch_training.errors import UserError  # noqa: E402
from patch_training.hf_convert import export_hf, import_hf  # noqa: E402
from patch_training.model import Transformer  # noqa: E402
from patch_training.contract.checkpoint import Checkpoint  # noqa: E402

pytestmark = pytest.mark.hf
REPO = Path(__file__).resolve().parents[2]

CASES = {
    # GQA, untied, rope_theta != 10000, head_dim != hidden / heads
    "gqa_untied": dict(num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False,
                       rope_theta=500000.0, head_dim=16),
    # multi-query, tied embeddings
    "mqa_tied": dict(num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=True,
                     rope_theta=20000.0),
}


def _hf_model(tmp_path: Path, name: str, **overrides):
    torch.manual_seed(0)
    kwargs = dict(vocab_size=71, hidden_size=32, intermediate_size=56, num_hidden_layers=2,
                  max_position_embeddings=128, rms_norm_eps=1e-5, **CASES[name])
    kwargs.update(overrides)
    config = transformers.LlamaConfig(**kwargs)
    model = transformers.LlamaForCausalLM(config).eval()
    # Random init gives tiny norms' spread: perturb every weight so the test is not degenerate.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf_dir = tmp_path / f"hf_{name}"
    model.save_pretrained(hf_dir)
    return model, hf_dir


def _hf_logits(model, tokens: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(tokens)).logits.float().numpy()


@pytest.mark.parametrize("case", list(CASES))
def test_import_logits_generation_and_export_roundtrip(tmp_path, case):
    hf_model, hf_dir = _hf_model(tmp_path, case)
    ckpt = import_hf(hf_dir, tmp_path / "ckpt")
    opened = Checkpoint.open(ckpt)
    params, config = opened.params, opened.config
    assert config.tie_embeddings == CASES[case]["tie_word_embeddings"]
    assert config.rope_theta == CASES[case]["rope_theta"]
    assert ("lm_head" in params) != config.tie_embeddings

    tokens = np.random.default_rng(0).integers(0, 71, size=(2, 13))
    ours = np.asarray(Transformer(config).apply({"params": params}, jnp.asarray(tokens)))
    ref = _hf_logits(hf_model, tokens)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=0)

    prompts = [[3, 17, 5, 9], [40, 2, 33, 8, 11, 12, 60]]
    samples = Decoder(config, params, batch_size=2).generate(prompts, max_new_tokens=10, stop_tokens=[])
    for prompt, (sample,) in zip(prompts, samples):
        with torch.no_grad():
            hf_out = hf_model.generate(torch.as_tensor([prompt]), max_new_tokens=10, do_sample=False,
                                       eos_token_id=None, pad_token_id=0, min_new_tokens=10)
        assert sample.token_ids == hf_out[0, len(prompt):].tolist()

    exported = export_hf(ckpt, tmp_path / "exported", max_shard_bytes=20_000)
    assert (exported / "model.safetensors.index.json").is_file()  # sharded export
    reloaded = transformers.LlamaForCausalLM.from_pretrained(exported).eval()
    np.testing.assert_array_equal(_hf_logits(reloaded, tokens), ref)
    # And the sharded export imports back to the same parameters.
    again = Checkpoint.open(import_hf(exported, tmp_path / "ckpt2"))
    again, config2 = again.params, again.config
    assert config2 == config
    np.testing.assert_array_equal(again["embedding"], params["embedding"])


def _leftovers(parent: Path, name: str) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(name) or p.name.startswith(f".{name}")]


def test_bad_inputs_get_one_line_and_leave_nothing(tmp_path):
    _, hf_dir = _hf_model(tmp_path, "mqa_tied")
    out = tmp_path / "out"

    with pytest.raises(UserError, match="HF directory not found"):
        import_hf(tmp_path / "nope", out)
    with pytest.raises(UserError, match="checkpoint directory not found"):
        export_hf(tmp_path / "nope", out)

    cfg = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**cfg, "architectures": ["GPT2LMHeadModel"],
                                                    "model_type": "gpt2"}))
    with pytest.raises(UserError, match="unsupported architecture"):
        import_hf(hf_dir, out)

    (hf_dir / "config.json").write_text(json.dumps({**cfg, "intermediate_size": 64}))
    with pytest.raises(UserError, match=r"mlp\.\w+_proj\.weight' has shape \(\d+, \d+\), config.json implies"):
        import_hf(hf_dir, out)

    (hf_dir / "config.json").write_text(json.dumps({**cfg, "num_hidden_layers": 3}))
    with pytest.raises(UserError, match="missing tensor"):
        import_hf(hf_dir, out)

    (hf_dir / "config.json").write_text(json.dumps(cfg))
    from safetensors.numpy import load_file, save_file
    weights = hf_dir / "model.safetensors"
    original = weights.read_bytes()
    tensors = load_file(str(weights))
    tensors["model.final_norm.weight"] = tensors.pop("model.norm.weight")
    save_file(tensors, str(weights))
    with pytest.raises(UserError, match="unexpected tensor 'model.final_norm.weight'"):
        import_hf(hf_dir, out)
    weights.write_bytes(original)

    (hf_dir / "tokenizer.model").write_bytes(b"this is not a sentencepiece model")
    with pytest.raises(UserError, match="does not load"):
        import_hf(hf_dir, out)
    assert _leftovers(tmp_path, "out") == []


def test_cli_one_line_error(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "patch_training.hf_convert", "import", "--hf_dir",
                           str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: HF directory not found: {tmp_path / 'missing'}"]


def test_generate_cli_from_hf_dir_matches_transformers(tmp_path):
    from evals.generate import main
    hf_model, hf_dir = _hf_model(tmp_path, "gqa_untied")
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "x", "token_ids": [4, 8, 15, 16, 23]}) + "\n")
    out = tmp_path / "o.jsonl"
    assert main(["--hf_dir", str(hf_dir), "--prompts", str(prompts), "--out", str(out),
                 "--max_new_tokens", "6"]) == 0
    row = json.loads(out.read_text())
    with torch.no_grad():
        ref = hf_model.generate(torch.as_tensor([[4, 8, 15, 16, 23]]), max_new_tokens=6, do_sample=False,
                                eos_token_id=None, pad_token_id=0, min_new_tokens=6)
    assert row["id"] == "x" and row["samples"][0]["token_ids"] == ref[0, 5:].tolist()
