"""`python -m evals.case2code run` end to end on a tiny random checkpoint, then resumed from its cache."""
import json

import jax
import pytest

from patch_training.model import ModelConfig, init_params
from patch_training.params_io import save_params

CFG = ModelConfig(vocab_size=264, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2)


@pytest.mark.slow
def test_run_writes_every_output_and_resumes(tmp_path, official_rows, capsys):
    from evals.case2code.cli import main
    ckpt = save_params(tmp_path / "ckpt", init_params(CFG, jax.random.key(1)), CFG, {"kind": "byte"})
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in official_rows[:3]))
    argv = ["run", "--checkpoint", str(ckpt), "--data", str(data), "--out", str(tmp_path / "out"),
            "--max_new_tokens", "8", "--batch_size", "2", "--workers", "1", "--limit", "2"]
    assert main(argv) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["n_rows"] == 2 and line["pass_at_1"] == 0.0 and line["gold_ceiling"] == 1.0
    out = tmp_path / "out"
    for name in ("predictions.jsonl", "samples.jsonl", "results.json", "results.md", "results.png"):
        assert (out / name).is_file(), name
    samples = [json.loads(l) for l in (out / "samples.jsonl").read_text().splitlines()]
    assert {"prompt_hash", "completion", "code", "status", "verdicts"} <= set(samples[0])
    assert all(s["status"] == "truncated" for s in samples)   # 8 tokens cannot finish an answer
    results = json.loads((out / "results.json").read_text())
    assert results["cache"]["misses"] == 2 and results["model_fingerprint"]
    assert results["data_rows_in_file"] == 3                      # what the 2 rows are a slice of
    from evals.provenance import records_hash
    prov = results["provenance"]
    assert prov["model_fingerprint"] == results["model_fingerprint"]
    assert prov["data_hash"] == records_hash(official_rows[:2])      # the rows evaluated, as loaded
    assert prov["settings"]["sampling"]["max_new_tokens"] == 8 and prov["settings"]["sampling"]["temperature"] == 0
    assert "gold ceiling" in (out / "results.md").read_text()
    assert main(argv) == 0                                       # a re-run asks the model for nothing
    assert json.loads((out / "results.json").read_text())["cache"] == {**results["cache"], "hits": 2, "misses": 0}
