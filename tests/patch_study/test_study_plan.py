"""The run list, its cost, the budget arithmetic and the row gin files."""
from fractions import Fraction

import pytest

from benchmarks.patch_study import plan as plan_lib
from patch_training.errors import UserError


def test_run_list_and_cost():
    runs = plan_lib.plan_runs(3)
    names = [r.name for r in runs]
    assert len(runs) == 30 and len(set(names)) == 30                    # every row gets 3 seeds
    # The headline trio first, with all its seeds, so a study stopped early still carries it.
    assert names[:9] == [f"{r}_s{s}" for s in range(3) for r in ("token_only", "k4_lambda2_3", "token_only_x1_2")]
    assert names[9:11] == ["small_token_only_s0", "small_k4_lambda2_3_s0"]
    rel = {r.name: r.relative_cost for r in plan_lib.ROWS}
    assert rel == pytest.approx({"token_only": 1, "k4_lambda2_3": 0.5, "token_only_x1_2": 0.5,
                                 "small_token_only": 1, "small_k4_lambda2_3": 0.5, "k2_lambda2_3": 2 / 3,
                                 "token_only_x2_3": 2 / 3, "k4_lambda1_2": 0.625, "k4_lambda4_5": 0.4,
                                 "k8_lambda2_3": 5 / 12})
    main = 3 * (1 + 0.5 + 0.5 + 2 / 3 + 2 / 3 + 0.625 + 0.4 + 5 / 12)
    small = 3 * 1.5 * 153_840 / 639_840 * plan_lib.SMALL.step_cost_estimate
    assert plan_lib.total_relative_cost(runs) == pytest.approx(main + small)


def test_small_size_has_a_quarter_of_the_parameters_and_the_same_tokens_per_parameter():
    from benchmarks.patch_study.__main__ import model_facts
    main = model_facts()
    small = model_facts([plan_lib.BASE_GIN, plan_lib.SMALL.model_gin])
    assert main["params"] == plan_lib.MAIN_PARAMS and small["params"] == plan_lib.SMALL.params
    assert 0.2 < small["params"] / main["params"] < 0.3
    steps = plan_lib.SMALL.token_steps(plan_lib.DESIGN_TOKEN_STEPS)
    per_param_main = plan_lib.token_budget(plan_lib.DESIGN_TOKEN_STEPS) / main["params"]
    per_param_small = plan_lib.token_budget(steps) / small["params"]
    assert steps == 864 and per_param_small == pytest.approx(per_param_main, rel=0.01)


def test_only_filters_by_run_or_row_and_refuses_unknown():
    assert [r.name for r in plan_lib.plan_runs(3, ["token_only"])] == ["token_only_s0", "token_only_s1",
                                                                        "token_only_s2"]
    assert [r.name for r in plan_lib.plan_runs(3, ["k8_lambda2_3_s0"])] == ["k8_lambda2_3_s0"]
    assert len(plan_lib.plan_runs(1)) == len(plan_lib.ROWS)
    with pytest.raises(UserError, match="unknown run"):
        plan_lib.plan_runs(3, ["k3_lambda1_2"])


@pytest.mark.parametrize("main_steps", [plan_lib.STEP_QUANTUM, plan_lib.DESIGN_TOKEN_STEPS])
def test_every_row_splits_into_whole_steps(main_steps):
    from patch_training.two_stage_training import TwoStageConfig
    for row in plan_lib.ROWS:
        steps = row.token_steps(main_steps)
        budget = row.token_budget(main_steps)
        # The default B1 (B2/K rows): every step of both stages takes B2·T tokens.
        plans = TwoStageConfig(token_budget=budget, sequence_length=plan_lib.SEQUENCE_LENGTH,
                               batch_size=plan_lib.BATCH_SIZE, patch_size=row.patch_size,
                               patch_fraction=str(row.patch_fraction)).plan()
        assert sum(p.tokens for p in plans) == budget, row.name   # no rounding: equal tokens per run
        assert {p.batch_size * p.sequence_length for p in plans} == {plan_lib.BATCH_SIZE * plan_lib.SEQUENCE_LENGTH}
        assert sum(p.num_steps for p in plans) == steps, row.name   # λ of the updates at patch level
        if row.patch_fraction:
            assert plans[0].num_steps == steps * row.patch_fraction, row.name


def test_budget_minutes_quantised_and_capped():
    cost = plan_lib.total_relative_cost(plan_lib.plan_runs(3))
    steps = plan_lib.token_steps_for_minutes(3, 0.01, cost, 5.0, 30)
    assert steps % plan_lib.STEP_QUANTUM == 0 and steps >= plan_lib.STEP_QUANTUM
    assert plan_lib.token_steps_for_minutes(10_000, 0.01, cost, 5.0, 10) == plan_lib.DESIGN_TOKEN_STEPS
    assert plan_lib.token_steps_for_minutes(1, 0.5, cost, 60.0, 10) == plan_lib.STEP_QUANTUM  # floor


def test_row_gin_files_bind_their_k_and_lambda():
    import gin
    from patch_training.main.two_stage import parse_experiment_gin
    for row in plan_lib.ROWS:
        gin.clear_config()
        parse_experiment_gin([row.gin_file], ["MODEL_DIR = '/tmp/unused'"])
        frac = gin.query_parameter("%PATCH_FRACTION")
        assert Fraction(frac) == row.patch_fraction, row.name
        if row.patch_fraction:
            assert gin.query_parameter("%PATCH_SIZE") == row.patch_size
        assert gin.query_parameter("%TOKEN_BUDGET") == row.token_budget(plan_lib.DESIGN_TOKEN_STEPS), row.name
        assert gin.query_parameter("optimizer.OptimizerConfig.end_lr_fraction") == 0.0   # as the official runs
        assert gin.query_parameter("model.ModelConfig.hidden_size") == (96 if row.size is plan_lib.MAIN else 48)
    gin.clear_config()


TABLE1 = {"370m_table1_token_only_v5p-128": (None, 0), "370m_table1_k4_lambda1_2_v5p-128": (4, "1/2"),
          "370m_table1_k4_lambda2_3_v5p-128": (4, "2/3"), "370m_table1_k4_lambda4_5_v5p-128": (4, "4/5"),
          "370m_table1_k2_lambda2_3_v5p-128": (2, "2/3"), "370m_table1_k8_lambda2_3_v5p-128": (8, "2/3"),
          "370m_table1_k16_lambda2_3_v5p-128": (16, "2/3"), "370m_table1_k4_lambda1_4_v5p-128": (4, "1/4"),
          "780m_table1_k4_lambda2_3_v5p-128": (4, "2/3"), "2_7b_table1_token_only_v5p-512": (None, 0)}


def test_pod_table1_rows_bind_the_paper_recipe():
    import gin
    from patch_training.main.two_stage import parse_experiment_gin
    for name, (k, lam) in TABLE1.items():
        gin.clear_config()
        parse_experiment_gin([f"experiments/patch/{name}.gin"], ["MODEL_DIR = '/tmp/unused'",
                                                                  "DATA_STORE = '/mnt/pile_store'",
                                                                  "PILE_TRAIN_FILES = ['gs://b/train/*.jsonl.zst']",
                                                                  "PILE_VALIDATION_FILES = ['gs://b/val.jsonl.zst']",
                                                                  "vocab.get_vocabulary.model_path = '/t.model'"])
        assert Fraction(gin.query_parameter("%PATCH_FRACTION")) == Fraction(lam), name
        if k:
            assert gin.query_parameter("%PATCH_SIZE") == k
        assert gin.query_parameter("%TOKEN_BUDGET") == 360_000_000_000
        assert gin.query_parameter("%BATCH_SIZE") * gin.query_parameter("%SEQUENCE_LENGTH") == 1024 * 2048
        assert gin.query_parameter("optimizer.OptimizerConfig.learning_rate") == 3e-4
        assert gin.query_parameter("optimizer.OptimizerConfig.warmup_steps") == 2000
        assert gin.query_parameter("optimizer.OptimizerConfig.end_lr_fraction") == 0.0   # HF cosine, to 0
        assert gin.query_parameter("%PATCH_BATCH_SIZE") is None   # B2/K rows: equal tokens per step
        # pile-uncopyrighted's JSONL shards, read from the row store (issue 28; `pile:1.0.0` is not in TFDS)
        assert gin.query_parameter("%PILE_TRAIN_FILES") == ["gs://b/train/*.jsonl.zst"]
        assert set(gin.query_parameter("factory.make_dataset.row_stores")) == {"pile"}
    gin.clear_config()
