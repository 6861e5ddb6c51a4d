"""The real sharded train step compiled for TPU slices on this CPU: memory plan, FLOP counts, errors."""
import json
import subprocess
import sys

import pytest

from patch_training import aot_compile as aot
from patch_training.main import aot as aot_cli
from patch_training.errors import UserError
from patch_training.gin_utils import REPO_ROOT
from patch_training.tpu_topologies import parse_topology, topology_devices
from tests.aot.conftest import needs_libtpu

pytestmark = needs_libtpu

TINY_PATCH = ["configs/experiments/patch/tiny_cpu_patch.gin", "configs/mesh/tpu_pod_slice.gin"]
TINY_TOKEN = ["configs/experiments/tiny_cpu.gin", "configs/mesh/tpu_pod_slice.gin"]
CONTRACT = {"stage", "hbm_bytes_per_chip", "hbm_capacity_bytes", "fits", "xla_flops", "analytic_flops",
            "compile_s"}


def _run_main(capsys, argv):
    code = aot_cli.main(argv)
    out = capsys.readouterr().out.strip().splitlines()
    return code, json.loads(out[-1])


@pytest.mark.slow   # two TPU compiles: ~10-15 s of CPU
def test_two_stage_experiment_compiles_each_stage(capsys):
    # 16 rows per token step: the patch stage takes 16/K = 4 rows, one per fsdp shard of the 4 chips
    code, report = _run_main(capsys, [f"--gin_file={f}" for f in TINY_PATCH]
                             + ["--gin.BATCH_SIZE=16", "--topology=v5p-8", "--flops=none"])
    assert code == 0
    assert report["topology"] == "v5p-8" and report["chips"] == 4 and report["mesh"]["fsdp"] == 4
    assert [s["stage"] for s in report["stages"]] == ["stage1_patch_k4", "stage2_token"]
    for s in report["stages"]:
        assert CONTRACT <= set(s) and s["fits"] is True
        # The buffer sum the issue defines; the donated state is aliased, so it is subtracted.
        assert s["hbm_bytes_per_chip"] == s["argument_bytes"] + s["output_bytes"] + s["temp_bytes"] - s["alias_bytes"]
        assert s["alias_bytes"] > 0 and 0 < s["hbm_bytes_per_chip"] < s["hbm_capacity_bytes"]
    patch, token = report["stages"]
    assert patch["sequence_length"] == 4 * token["sequence_length"]
    # Equal tokens per step: the patch step has 1/K of the rows at the same positions per row, so 1/K of the
    # token step's analytic FLOPs (REFERENCE §1: the patch stage costs λ/K of a token-only run's compute).
    assert patch["analytic_flops"] * 4 == token["analytic_flops"]


@pytest.mark.slow   # three TPU compiles: ~15-25 s of CPU
def test_xla_flops_agree_with_the_analytic_count():
    """Small unrolled compiles, extrapolated, equal the full unrolled count and match our formula."""
    aot_cli.parse_engine_gin(TINY_TOKEN, ["model.ModelConfig.num_layers = 3"], [])
    model_config, optimizer_config, (stage,) = aot._engine_configs()
    mesh = aot._engine_mesh(topology_devices(parse_topology("v5p-8")))
    approx = aot.xla_flops_whole_slice(model_config, optimizer_config, stage, mesh, "extrapolate")
    exact = aot.xla_flops_whole_slice(model_config, optimizer_config, stage, mesh, "exact")
    # Depth 1 and 2 at one row per data shard, scaled to 3 layers and 4 rows: the same count.
    assert approx["xla_flops"] == pytest.approx(exact["xla_flops"], rel=1e-6)
    # XLA computes the whole (masked) score matrix and counts elementwise work: a few % above the
    # matmul count without causal halving at this tiny width; the halved count is the MFU one.
    full = aot._engine_analytic_flops(model_config, stage, causal_halved=False)
    halved = aot._engine_analytic_flops(model_config, stage)
    assert 1.0 <= exact["xla_flops"] / full < 1.12, exact["xla_flops"] / full
    assert halved < full


def test_a_config_that_does_not_fit_reports_and_exits_1(capsys):
    # ~1.1B parameters with AdamW state (16 bytes each) cannot fit one 16 GiB v5e chip.
    big = ["--gin.model.ModelConfig.hidden_size=4096", "--gin.model.ModelConfig.intermediate_size=24576",
           "--gin.model.ModelConfig.num_heads=32", "--gin.model.ModelConfig.num_kv_heads=32",
           "--gin.model.ModelConfig.num_layers=4", "--gin.BATCH_SIZE=1"]
    code, report = _run_main(capsys, [f"--gin_file={f}" for f in TINY_TOKEN] + big
                             + ["--topology=v5litepod-1", "--flops=none"])
    stage = report["stages"][0]
    assert code == 1 and stage["fits"] is False
    assert stage["hbm_bytes_per_chip"] > stage["hbm_capacity_bytes"] == 16 * 2 ** 30


def test_mesh_that_does_not_divide_the_chips_fails_with_one_line():
    aot_cli.parse_engine_gin(TINY_TOKEN, ["partitioning.mesh_shape.tensor = 3"], [])
    with pytest.raises(UserError) as e:
        aot.compile_experiment(parse_topology("v5p-8"), "none")
    msg = str(e.value)
    assert "\n" not in msg and "does not divide" in msg and "4 devices" in msg


def test_cli_unknown_topology_is_one_line_and_exit_2():
    proc = subprocess.run([sys.executable, "-m", "patch_training.aot", f"--gin_file={TINY_TOKEN[0]}",
                           "--topology=v7-64"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: unknown TPU topology 'v7-64'") and len(lines) == 1, proc.stderr
