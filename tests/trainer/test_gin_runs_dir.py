"""A `runs/` directory in the working directory (where run dirs go by default) must not break
gin includes of `runs/*.gin` (gin otherwise probes it as a Python namespace package and crashes)."""
import patch_training.configurables  # noqa: F401
from patch_training.checkpointing import CheckpointConfig
from patch_training.gin_utils import parse_gin
from patch_training.optimizer import OptimizerConfig
from patch_training.trainer import TrainerConfig


def test_include_runs_gin_with_runs_dir_in_cwd(tmp_path, monkeypatch):
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    # As under `python -m patch_training.train`: the working directory is importable, so `runs` is a
    # namespace package there (the case that crashed gin), however pytest itself was started.
    monkeypatch.syspath_prepend(str(tmp_path))
    parse_gin(["experiments/tiny_cpu.gin"], ["MODEL_DIR = '/tmp/unused'"], finalize=False)
    # The configs the run would be built from hold every layer of the include chain, in order:
    # experiments/tiny_cpu.gin -> runs/pretrain.gin -> runs/common.gin, later files overriding earlier ones.
    optimizer, trainer, checkpoints = OptimizerConfig(), TrainerConfig(), CheckpointConfig()
    assert optimizer.b2 == 0.95 and checkpoints.keep == 3              # only runs/common.gin sets these
    assert trainer.num_steps == 20 and trainer.batch_size == 4        # runs/pretrain.gin's macros, set by the experiment
    assert optimizer.learning_rate == 1e-3                            # the experiment overrides common's 3e-4
    assert checkpoints.save_every_steps == 10                         # ... and common's 500
