"""`python -m patch_training.train`: the pretraining CLI (kept at this path; the entry point lives in
`patch_training.main.train`, apart from the library)."""
from patch_training.errors import run_cli
from patch_training.main.train import PROG, main, parse_args  # noqa: F401

if __name__ == "__main__":
    run_cli(main, prog=PROG)
