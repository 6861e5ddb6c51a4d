"""lm-evaluation-harness's own command line, with our checkpoints registered as `--model patchtrain`.

    python -m evals.lm_eval_harness --model patchtrain --model_args checkpoint=DIR,batch_size=8 \\
        --tasks arc_easy,piqa --output_path runs/lm_eval [any other lm-eval flag]

lm-eval 0.4.13 finds models only in its registry: its built-in table (`lm_eval.models.MODEL_MAPPING`)
and classes whose module has been imported. It has no entry-point plugins and `--include_path` is for
tasks only, so the `lm_eval` console script cannot see a model defined in this (uninstalled) project.
This entry imports `evals.lm_eval_model` (which registers the class), then hands the arguments unchanged
to lm-eval's own CLI: every flag, subcommand (`run`, `ls`, `validate`) and output is lm-eval's.
Model args: see `evals.lm_eval_model`.
"""
from __future__ import annotations

import sys
from typing import Iterable

from patch_training.errors import UserError, run_cli


def _mend_old_pytablewriter() -> None:
    """lm-eval prints its results table with pytablewriter, and the one our lock can hold is 0.38 (newer
    ones need python-dateutil < 3; the project pins 4.0). Two things differ there, mended only on it:
    - the header attribute lm-eval sets is `headers`; 0.38 calls it `header_list` and would print the
      table under A, B, C...;
    - its DataProperty 0.37 converts the table's cells in a pool of forked processes (one per core), and
      a fork of a process running JAX's threads can deadlock: convert in this process instead."""
    try:
        import dataproperty
        from pytablewriter.writer._table_writer import AbstractTableWriter
    except ImportError:
        return
    if hasattr(AbstractTableWriter, "headers") or not hasattr(AbstractTableWriter, "header_list"):
        return   # a current pytablewriter, or mended already
    AbstractTableWriter.headers = property(lambda self: self.header_list,
                                           lambda self, value: setattr(self, "header_list", value))
    init = dataproperty.DataPropertyExtractor.__init__

    def in_process(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.max_workers = 1

    dataproperty.DataPropertyExtractor.__init__ = in_process


def main(argv: Iterable[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        from lm_eval.__main__ import cli_evaluate
    except ImportError:
        raise UserError("lm-evaluation-harness is not installed: run scripts/setup.sh --lmeval") from None
    import evals.lm_eval_model  # noqa: F401 - registers --model patchtrain

    _mend_old_pytablewriter()
    saved = sys.argv
    sys.argv = ["lm-eval", *args]  # lm-eval's parser reads sys.argv itself (and inserts `run` when absent)
    try:
        cli_evaluate()
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    run_cli(main, prog="python -m evals.lm_eval_harness")
