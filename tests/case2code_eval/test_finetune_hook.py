"""Case2Code pass@1 as a training hook: the params in hand, in process, through the `LanguageModel` interface."""
import json
import types

import jax
import pytest

from patch_training.model import ModelConfig, init_params
from patch_training.train_hooks import HookInfo

CFG = ModelConfig(vocab_size=264, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2)


def info_for(run_dir, params) -> HookInfo:
    trainer = types.SimpleNamespace(run_dir=run_dir, model_config=CFG, vocab_spec={"kind": "byte"})
    return HookInfo(trainer, 7, types.SimpleNamespace(params=params), "end")


def test_not_requested_and_missing_data_say_so_without_a_model(tmp_path):
    from evals.case2code.finetune_hook import case2code_pass_at_1
    info = info_for(tmp_path, params=None)
    assert case2code_pass_at_1(limit=0).fn(info) == {"status": "not requested"}
    skipped = case2code_pass_at_1(data=str(tmp_path / "nope.jsonl"), limit=3).fn(info)
    assert skipped["status"] == "skipped" and "nope.jsonl" in skipped["reason"]
    assert not (tmp_path / "case2code_eval").exists()


@pytest.mark.slow
def test_end_hook_scores_the_params_it_is_given_and_writes_the_record(tmp_path, official_rows):
    from evals.case2code.finetune_hook import HOOK_NAME, case2code_pass_at_1
    from patch_training.contract.records import EvalRecord
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in official_rows[:3]))
    hook = case2code_pass_at_1(data=str(data), limit=2, max_new_tokens=8, batch_size=2)
    assert hook.name == HOOK_NAME and hook.at_end and not hook.every
    params = init_params(CFG, jax.random.key(1))
    outcome = hook.fn(info_for(tmp_path / "run", params))
    assert outcome["status"] == "completed", outcome
    assert outcome["summary"]["n_rows"] == 2 and outcome["summary"]["pass_at_1"] == 0.0   # 8 tokens: truncated
    record = EvalRecord.read(tmp_path / "run" / "case2code_eval" / "record.json")
    assert record.summary == outcome["summary"] and record.config["step"] == 7
    assert record.model_name == "run" and record.model_fingerprint
    # the model is the params handed in: other params are another model (another fingerprint)
    other = hook.fn(info_for(tmp_path / "other", init_params(CFG, jax.random.key(2))))
    assert EvalRecord.read(tmp_path / "other" / "case2code_eval" / "record.json").model_fingerprint != \
        record.model_fingerprint and other["status"] == "completed"
