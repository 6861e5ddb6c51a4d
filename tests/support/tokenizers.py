"""A small byte-level BPE `tokenizer.json` directory, laid out as an HF model directory would be."""
from __future__ import annotations

import json
from pathlib import Path

TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eot|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
TEXT = ["def add(a, b):\n    return a + b\n", "hello world, hello user", "f(1) == 2\nf(2) == 3\ndef f(x):"]


def write_tokenizer_dir(path: Path, vocab_size: int = 200, template_in: str = "config",
                        bos_in_post_processor: bool = True) -> Path:
    """tokenizer.json + tokenizer_config.json + generation_config.json; the chat template goes into
    tokenizer_config.json ("config", transformers 4) or chat_template.jinja ("jinja", transformers 5).
    Like LLaMA's tokenizer.json, its post-processor puts BOS first (unless `bos_in_post_processor=False`,
    as SmolLM2's)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<unk>", "<s>", "</s>", "<|eot|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TEXT * 20, trainer)
    if bos_in_post_processor:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", 1)])
    path.mkdir(parents=True, exist_ok=True)
    tok.save(str(path / "tokenizer.json"))
    config = {"bos_token": "<s>", "eos_token": {"content": "</s>"}}
    if template_in == "config":
        config["chat_template"] = TEMPLATE
    else:
        (path / "chat_template.jinja").write_text(TEMPLATE)
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    (path / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 3]}))
    return path
