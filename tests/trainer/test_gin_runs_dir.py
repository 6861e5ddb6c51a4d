"""A `runs/` directory in the working directory (where run dirs go by default) must not break
gin includes of `runs/*.gin` (gin otherwise probes it as a Python namespace package and crashes)."""
import patch_training.configurables  # noqa: F401
from patch_training.gin_utils import parse_gin


def test_include_runs_gin_with_runs_dir_in_cwd(tmp_path, monkeypatch):
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    parse_gin(["experiments/tiny_cpu.gin"], ["MODEL_DIR = '/tmp/unused'"], finalize=False)
    import gin
    # values only the included run files set: the include of runs/pretrain.gin (-> runs/common.gin) was
    # read from configs/, not probed in ./runs
    assert gin.query_parameter("%TASK") == "code_corpus"
    assert gin.query_parameter("optimizer.OptimizerConfig.b2") == 0.95
    assert gin.query_parameter("%TRAIN_STEPS") == 20              # and the experiment file's own binding
