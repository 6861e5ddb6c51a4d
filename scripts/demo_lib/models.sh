# Sourced by the demo's eval stages: the models the main job evaluates, as "label checkpoint-dir" lines,
# in report order. A model whose directory does not exist yet (its stage has not run) is left out with a
# line on stderr. DEMO_EVAL_MODELS="patch finetuned" limits the list.
demo_models() {  # run_dir
  local run_dir="$1" label dir
  while read -r label dir; do
    if [ -n "${DEMO_EVAL_MODELS:-}" ] && [[ " $DEMO_EVAL_MODELS " != *" $label "* ]]; then continue; fi
    if [ -d "$dir" ]; then echo "$label $dir"; else echo "   (model '$label' not evaluated: no $dir yet)" >&2; fi
  done <<LIST
patch $run_dir/stage2_token
baseline $run_dir/baseline/stage2_token
finetuned $run_dir/finetune_direct
LIST
}
