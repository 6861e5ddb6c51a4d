#!/usr/bin/env bash
# Demo stage: run by scripts/demo.sh as `bash STAGE RUN_DIR`, with PY set.
# A real pretrained model beside the demo's own: SmolLM2-135M-Instruct, from the Q4_1 GGUF file that set-up
# caches (scripts/setup.sh --models, which `make demo` runs), imported into our checkpoint format in
# the run layout's `pretrained` stage dir with its tokenizer and chat template, and adds it to the run's manifest as
# `smollm2` (kind pretrained). The eval stages then evaluate it like the demo's
# models (scripts/demo_lib/models.sh gives it its chat flags and slices). Without the file the stage says so
# and the evals go on without the model. Resumable: a finished import is kept; an interrupted one is redone
# (it writes to a temporary directory and renames it into place).
set -euo pipefail
run_dir="$1"
PY="${PY:-.venv/bin/python}"
source scripts/demo_lib/models.sh
out="$(run_layout stage "$run_dir" pretrained)"
if [[ -f "$out/model_config.json" ]] && run_layout has "$run_dir" smollm2; then
  echo "== real model: already imported in $out" >&2
  exit 0
fi
gguf="$("$PY" -c 'from patch_training.pretrained import smollm2_gguf_path as p; print(p(required=False) or "")')"
if [[ -z "$gguf" ]]; then
  echo "== real model skipped: no SmolLM2 GGUF file cached (scripts/setup.sh --models fetches it; \$SMOLLM2_GGUF names a copy)" >&2
  exit 0
fi
echo "== real model: importing $gguf -> $out" >&2
tmp="$(dirname "$out")/.$(basename "$out").importing"
rm -rf "$tmp"
"$PY" -m patch_training.hf_convert import --gguf "$gguf" --out "$tmp"
rm -rf "$out"
mv "$tmp" "$out"
# What the report names as the model's source (the file and its hash, so a reader can tell which weights ran).
info="$("$PY" - "$gguf" "$out" <<'PYEOF'
import hashlib, json, sys
from pathlib import Path
from patch_training.contract.checkpoint import Checkpoint
gguf, out = Path(sys.argv[1]), Path(sys.argv[2])
digest = hashlib.sha256()
with gguf.open("rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
config = Checkpoint.open(out, params=False).config.to_dict()   # the one opener, so a bad import fails here
print(json.dumps({
    "display_name": "SmolLM2-135M-Instruct", "sha256": digest.hexdigest(), "bytes": gguf.stat().st_size,
    "model_config": {k: config.get(k) for k in ("num_layers", "hidden_size", "num_heads", "num_kv_heads",
                                                 "intermediate_size", "vocab_size", "max_seq_len")},
}))
PYEOF
)"
run_layout add "$run_dir" --name smollm2 --checkpoint "$out" --stage 12_pretrained --kind pretrained \
  --source "$gguf" --info "$info"
echo "== real model: imported (the run's manifest records the source file and its sha256)" >&2
