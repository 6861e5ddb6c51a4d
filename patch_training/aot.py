"""`python -m patch_training.aot`: the TPU ahead-of-time compile CLI (kept at this path; the entry point
lives in `patch_training.main.aot`, the engine in `patch_training.aot_compile`)."""
from patch_training.errors import run_cli
from patch_training.main.aot import PROG, main  # noqa: F401

if __name__ == "__main__":
    run_cli(main, prog=PROG)
