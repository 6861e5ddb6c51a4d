"""`python -m patch_training.two_stage`: the two-stage CLI (kept at this path; the method lives in
`patch_training.two_stage_training`, the entry point in `patch_training.main.two_stage`)."""
from patch_training.errors import run_cli
from patch_training.main.two_stage import PROG, main  # noqa: F401

if __name__ == "__main__":
    run_cli(main, prog=PROG)
