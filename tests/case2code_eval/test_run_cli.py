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
    for name in ("predictions.jsonl", "samples.jsonl", "record.json", "results.md", "results.png", "gen_cache"):
        assert (out / name).exists(), name
    samples = [json.loads(l) for l in (out / "samples.jsonl").read_text().splitlines()]
    assert {"prompt_hash", "completion", "code", "status", "verdicts"} <= set(samples[0])
    assert all(s["status"] == "truncated" for s in samples)   # 8 tokens cannot finish an answer
    from evals.provenance import records_hash
    from patch_training.contract.records import EvalRecord
    record = EvalRecord.read(out / "record.json")
    assert record.eval == "case2code" and record.model_name == str(ckpt) and record.model_fingerprint
    assert record.summary["cache_misses"] == 2 and record.summary["data_rows_in_file"] == 3   # a slice of 3
    assert record.data_hash == records_hash(official_rows[:2])       # the rows evaluated, as loaded
    assert record.data_path == str(data) and record.items_path == "samples.jsonl" and record.git_commit
    assert record.config["sampling"]["max_new_tokens"] == 8 and record.config["sampling"]["temperature"] == 0
    assert record.table("statuses") == [{"status": "truncated", "answers": 2}]
    assert record.summary["gold_passed"] == 2 and record.summary["pass_at_1"] == 0.0
    assert "gold ceiling" in (out / "results.md").read_text()
    assert main(argv + ["--label", "tiny"]) == 0                  # a re-run asks the model for nothing
    again = EvalRecord.read(out / "record.json")
    assert (again.summary["cache_hits"], again.summary["cache_misses"], again.model_name) == (2, 0, "tiny")
