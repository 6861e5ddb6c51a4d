"""Entry points: argparse, logging, runtime set-up and gin parsing, apart from the library.

`python -m patch_training.train` and `python -m patch_training.two_stage` call `main/train.py` and
`main/two_stage.py`; both share `runtime.py` (multi-host flags, fake CPU devices, logging) and
`gin_setup.py` (register every configurable, then parse).
"""
