"""Case2Code (arXiv 2407.12504) data synthesis and, later, fine-tuning.

Synthesis flow: harvest real functions (`harvester`) -> write inputs (`typed_inputs`, `llm_inputs`) -> run
them in the sandbox (`execute`) -> keep rule + dedup + decontamination -> prompts (`prompt_render`) ->
splits (`splits`). `python -m case2code_finetune.synthesize` runs it all (`pipeline`).
"""
