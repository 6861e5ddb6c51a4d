"""`python tests/trainer/run_synthetic.py <train CLI args>`: the real train CLI with the synthetic data
configurable registered (tests/trainer/synthetic.gin binds it). Needs the repository root on
PYTHONPATH (`tests.support.xla_env.subprocess_env` sets it)."""
import tests.support.synthetic  # noqa: F401  (registers testing.SyntheticData)
from patch_training.errors import run_cli
from patch_training.train import main

if __name__ == "__main__":
    run_cli(main, prog="run_synthetic")
