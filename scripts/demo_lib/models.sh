# Sourced by the demo's stages. Every path of the run and every model list comes from the run layout
# (patch_training/contract/layout.py), asked through its CLI; nothing here spells a model or a sub-path.

# run_layout COMMAND RUN_DIR ...: `stage RUN_DIR NAME`, `file RUN_DIR NAME`, `eval RUN_DIR EVAL [MODEL [PART]]`,
# `add RUN_DIR --name N --checkpoint P --stage S`, `has RUN_DIR NAME`, `models RUN_DIR`.
run_layout() {
  "${PY:-.venv/bin/python}" -m patch_training.main.run_layout "$@"
}

# The models the eval stages evaluate, as "label checkpoint-dir" lines: the run manifest's, in the order the stages
# made them. A model whose checkpoint is gone is left out with a line on stderr. DEMO_EVAL_MODELS="patch finetuned"
# limits the list.
demo_models() {  # run_dir
  run_layout models "$1" --only "${DEMO_EVAL_MODELS:-}"
}

# The flags one model gets in one eval (case2code/official, case2code/synthetic, solverlearner, dynamicqa),
# printed as words; the word `skip` leaves the model out of that eval. A stage puts the flags after its own,
# and argparse keeps the last value of a repeated flag, so these win. The demo's own models take the stages'
# settings. SmolLM2-135M-Instruct is a chat model: it is asked through its chat template and decodes in bf16
# (faster than fp32 on CPU); it keeps the protocols' token limits where the demo's models are cut short, so it
# gets its own slices, sized to keep the main job within 30 minutes on 2 cores (WORKSPACE "The main job" has
# the measurements). The report says which slice each number comes from.
demo_model_flags() {  # label eval
  case "$1 $2" in
    "smollm2 case2code/official")  echo "--chat --decode_dtype bfloat16 --max_new_tokens 2048 --limit 12 --batch_size 12" ;;
    # Many of its answers repeat a sentence until the 2,048-token limit (4 of 12 official rows, 9 of 12 synthetic
    # ones when measured), so a set costs ~5 minutes on 2 cores however few its rows: the official set only.
    "smollm2 case2code/synthetic") echo "skip" ;;
    "smollm2 solverlearner")       echo "--chat --decode_dtype bfloat16 --batch_size 16 --limit 5 --max_new_tokens 64 --code_max_new_tokens 192" ;;
    "smollm2 dynamicqa")           echo "--chat --decode_dtype bfloat16 --limit 10" ;;
  esac
}
