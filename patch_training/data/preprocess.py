"""`python -m patch_training.data.preprocess`: a corpus into an ArrayRecord row store with Apache Beam.

A shim at this path; the entry point is `patch_training.main.preprocess`, the library
`patch_training.data.store_build` (Beam) and `patch_training.data.row_store` (reading).
"""
from patch_training.errors import run_cli
from patch_training.main.preprocess import PROG, main  # noqa: F401

if __name__ == "__main__":
    run_cli(main, prog=PROG)
