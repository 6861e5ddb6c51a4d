"""`python -m patch_training.main.run_layout COMMAND RUN_DIR ...`: the run layout for shell stages.

  models RUN_DIR [--only "a b"]     the manifest's models as "name checkpoint" lines, in manifest order; a model
                                    whose checkpoint is gone is left out with a line on stderr
  add RUN_DIR --name N --checkpoint P --stage S [--kind pretrained] [--source SRC] [--info JSON]
                                    record a model a stage made (fingerprints its files)
  has RUN_DIR NAME                  exit 0 when the manifest lists NAME, else 1
  stage RUN_DIR STAGE               a stage's directory (pretrain, pretrained, baseline, case2code_data, finetune)
  file RUN_DIR NAME                 a run file (prompts, samples, stage_log)
  eval RUN_DIR EVAL [MODEL [PART]]  an eval's output directory for one model (and data part); without MODEL
                                    the eval's own directory

The demo's scripts ask here instead of spelling paths or model lists, so `RunLayout` stays the one owner.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from patch_training.contract.layout import MODEL_KINDS, RunLayout
from patch_training.errors import UserError, run_cli


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m patch_training.main.run_layout", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models")
    models.add_argument("run_dir")
    models.add_argument("--only", default="", help="space-separated names to keep (empty: all)")
    add = sub.add_parser("add")
    add.add_argument("run_dir")
    add.add_argument("--name", required=True)
    add.add_argument("--checkpoint", required=True)
    add.add_argument("--stage", required=True)
    add.add_argument("--kind", choices=MODEL_KINDS, default="trained")
    add.add_argument("--source", default=None)
    add.add_argument("--info", default=None, help="a JSON object of details for the report")
    has = sub.add_parser("has")
    has.add_argument("run_dir")
    has.add_argument("name")
    stage = sub.add_parser("stage")
    stage.add_argument("run_dir")
    stage.add_argument("stage")
    file = sub.add_parser("file")
    file.add_argument("run_dir")
    file.add_argument("name")
    ev = sub.add_parser("eval")
    ev.add_argument("run_dir")
    ev.add_argument("eval")
    ev.add_argument("model", nargs="?", default=None)
    ev.add_argument("part", nargs="?", default=None)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    layout = RunLayout(args.run_dir)
    if args.command == "models":
        keep = set(args.only.split())
        for m in layout.models():
            if keep and m.name not in keep:
                continue
            path = layout.checkpoint_path(m)
            if path.exists():
                print(f"{m.name} {path}")
            else:
                print(f"   (model '{m.name}' left out: its checkpoint {path} is gone)", file=sys.stderr)
        return 0
    if args.command == "add":
        try:
            info = json.loads(args.info) if args.info else None
        except ValueError as e:
            raise UserError(f"--info is not JSON: {e}") from None
        if info is not None and not isinstance(info, dict):
            raise UserError("--info must be a JSON object")
        entry = layout.add_model(args.name, args.checkpoint, args.stage, kind=args.kind, source=args.source,
                                 info=info)
        print(f"manifest {layout.manifest_path}: {entry.name} = {entry.checkpoint} (fingerprint {entry.fingerprint}, "
              f"stage {entry.stage})", file=sys.stderr)
        return 0
    if args.command == "has":
        return 0 if layout.model(args.name) else 1
    if args.command == "stage":
        print(layout.stage_dir(args.stage))
    elif args.command == "file":
        print(layout.stage_file(args.name))
    elif args.model is None:
        print(layout.eval_root(args.eval))
    else:
        print(layout.eval_dir(args.eval, args.model, args.part))
    return 0


if __name__ == "__main__":
    run_cli(main, prog="python -m patch_training.main.run_layout")
