#!/usr/bin/env bash
# Main job: the most complete pipeline that exists, end to end on CPU, ending in a report.
# Each stage is a script in scripts/demo_stages/, run in name order as `bash STAGE RUN_DIR [ARGS...]`
# from the repository root; a stage is resumable (a re-run skips or resumes finished work) and says
# what it does on stderr. Each finished stage appends a line to RUN_DIR/demo_stages.jsonl (the report's
# "What ran" table). Extra arguments go to the pre-training stages (gin flags).
#   DEMO_STAGES="10 15" limits the run to the stages whose names start with those prefixes.
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir="${1:-runs/demo}"
export PY="${PY:-.venv/bin/python}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$run_dir"
# With the optional libtpu extra installed (make test installs it), every JAX process on a machine
# without TPUs probes for one (~0.6 s and a screen of libtpu errors). On a machine with neither TPU
# nor NVIDIA device files, say CPU up front; a user's own JAX_PLATFORMS always wins.
if [ -z "${JAX_PLATFORMS+x}" ] && ! compgen -G "/dev/accel*" >/dev/null && ! compgen -G "/dev/vfio/[0-9]*" >/dev/null \
   && [ ! -e /dev/nvidia0 ]; then
  export JAX_PLATFORMS=cpu
fi
# CPU training reuses XLA's per-step buffers under tcmalloc instead of faulting them in again each
# step under glibc's malloc (patch_training/allocator.py). A user's own LD_PRELOAD always wins.
if [ -z "${LD_PRELOAD:-}" ] && tcmalloc="$("$PY" -m patch_training.allocator 2>/dev/null)" && [ -n "$tcmalloc" ]; then
  export LD_PRELOAD="$tcmalloc"
fi
stages=(scripts/demo_stages/*.sh)
n=${#stages[@]}
i=0
t0=$(date +%s)
for stage in "${stages[@]}"; do
  i=$((i + 1))
  name="$(basename "$stage" .sh)"
  if [ -n "${DEMO_STAGES:-}" ]; then
    keep=0; for p in $DEMO_STAGES; do [[ "$name" == "$p"* ]] && keep=1; done
    [ $keep = 1 ] || continue
  fi
  start=$(date +%s)
  echo "==== [$i/$n] demo stage $name (started $(date -u +%H:%M:%S), $(( start - t0 )) s into the job)" >&2
  case "$name" in
    10_*|15_*) bash "$stage" "$run_dir" "${@:2}" ;;
    *) bash "$stage" "$run_dir" ;;
  esac
  wall=$(( $(date +%s) - start ))
  printf '{"stage": "%s", "status": "done", "wall_s": %d, "finished_at": "%s"}\n' \
    "$name" "$wall" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$run_dir/demo_stages.jsonl"
  echo "==== [$i/$n] demo stage $name done in $wall s" >&2
done
echo "==== main job finished in $(( $(date +%s) - t0 )) s; report: $run_dir/report.html (and report.md)" >&2
