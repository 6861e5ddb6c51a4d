"""Every eval CLI takes --decode_dtype (to the decoding engine, and into the model fingerprint, so a bf16
run never reads fp32 samples from the cache); long generation logs rows done, tokens/s and ETA."""
import logging

import pytest

from evals.backends import open_model, open_model_from_args
from evals.model_api import Sampling, ScriptedModel
from patch_training.errors import UserError


def _parsers():
    from evals.case2code.cli import build_parser as c2c
    from evals.dynamicqa.cli import build_parser as dqa
    from evals.solverlearner.cli import build_parser as sl
    return {"case2code": (c2c(), ["run", "--data", "d.jsonl", "--out", "o"]),
            "solverlearner": (sl(), ["run", "--out", "o"]),
            "dynamicqa": (dqa(with_backends=True), ["run", "--out", "o"]),
            "dynamicqa (no backends)": (dqa(with_backends=False), ["run", "--out", "o"])}


@pytest.mark.parametrize("name", list(_parsers()))
def test_every_eval_cli_takes_decode_dtype(name):
    parser, argv = _parsers()[name]
    args = parser.parse_args(argv + ["--checkpoint", "c", "--decode_dtype", "bfloat16"])
    assert args.decode_dtype == "bfloat16"
    with pytest.raises(SystemExit):
        parser.parse_args(argv + ["--checkpoint", "c", "--decode_dtype", "float8"])


def test_decode_dtype_reaches_the_engine_and_the_fingerprint(tiny_checkpoint):
    import argparse
    from evals.backends import add_model_args
    fp32 = open_model(checkpoint=str(tiny_checkpoint), batch_size=2)
    ap = argparse.ArgumentParser()
    add_model_args(ap)
    bf16 = open_model_from_args(ap.parse_args(["--checkpoint", str(tiny_checkpoint), "--decode_dtype", "bfloat16"]))
    assert (fp32.decoder.compute_dtype, bf16.decoder.compute_dtype) == ("float32", "bfloat16")
    assert bf16.fingerprint != fp32.fingerprint
    assert open_model(checkpoint=str(tiny_checkpoint), decode_dtype="float32").fingerprint == fp32.fingerprint
    assert bf16.progress and not fp32.progress          # the CLIs' models log progress inside a batch
    out = bf16.generate(["hello"], 1, Sampling(max_new_tokens=4))[0][0]
    assert len(out.token_ids) == len(out.token_logprobs) > 0
    with pytest.raises(UserError, match="--decode_dtype applies to in-process models"):
        open_model(endpoint="http://localhost:1/v1", decode_dtype="bfloat16")


def test_progress_lines_name_rows_tokens_per_second_and_eta(tmp_path, caplog):
    from evals.backends.jax_backend import _progress_logger
    from evals.gen_cache import CachedModel
    model = CachedModel(ScriptedModel(lambda prompt, j: "x" * 3), tmp_path / "cache", chunk=2)
    model.progress = True
    with caplog.at_level(logging.INFO, logger="evals.gen_cache"):
        model.generate([f"p{i}" for i in range(5)], 1, Sampling(max_new_tokens=4))
    lines = [r.getMessage() for r in caplog.records if r.name == "evals.gen_cache" and "generated" in r.getMessage()]
    assert lines and lines[-1].startswith("generated 5/5 rows, ") and "tokens/s" in lines[-1] and "ETA 0s" in lines[-1]
    caplog.clear()
    report = _progress_logger(every_s=0.0)
    with caplog.at_level(logging.INFO, logger="evals.backends.jax_backend"):
        report(1, 8, 640)
    assert "1/8 samples done, 640 tokens" in caplog.text and "tokens/s" in caplog.text
