"""`python tests/trainer/run_synthetic.py <train CLI args>`: the real train CLI with the synthetic data
configurable registered (tests/trainer/synthetic.gin binds it)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import synthetic  # noqa: E402,F401  (registers testing.SyntheticData)
from patch_training.errors import run_cli  # noqa: E402
from patch_training.train import main  # noqa: E402

if __name__ == "__main__":
    run_cli(main, prog="run_synthetic")
