"""`python tests/trainer/run_synthetic.py <train CLI args>`: the real train CLI with the test data
configurables registered (tests/trainer/synthetic.gin and store.gin bind them). Needs the repository
root on PYTHONPATH (`tests.support.xla_env.subprocess_env` sets it)."""
import tests.support.slow_reads  # noqa: F401  (registers testing.slow_reads)
import tests.support.synthetic  # noqa: F401  (registers testing.SyntheticData)
from patch_training.errors import run_cli
from patch_training.train import main

if __name__ == "__main__":
    run_cli(main, prog="run_synthetic")
