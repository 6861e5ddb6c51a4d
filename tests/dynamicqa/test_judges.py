"""Equivalence judges: exact and ROUGE (light), NLI with a tiny random DeBERTa-v2 saved to a temporary
directory (the entailment label comes from its config), and the packaged MiniLM embedding model."""
import json

import numpy as np
import pytest

from evals.dynamicqa.judges import ExactJudge, RougeJudge, make_judge, normalise
from evals.dynamicqa.nli_judge import entailment_index
from patch_training.errors import UserError


def test_exact_judge_normalises():
    assert normalise("The  Journalist!") == "journalist"
    eq = ExactJudge().equivalence(["The journalist.", "journalist", "a judge"])
    assert eq.tolist() == [[True, True, False], [True, True, False], [False, False, True]]


def test_rouge_judge_threshold():
    eq = RougeJudge(0.3).equivalence(["american journalist", "journalist", "judge"])
    # F1("american journalist", "journalist") = 2 * .5 * 1 / 1.5 = 0.667
    assert eq[0, 1] and not eq[0, 2] and not eq[1, 2]
    assert not RougeJudge(0.7).equivalence(["american journalist", "journalist"])[0, 1]


def test_entailment_label_lookup():
    assert entailment_index({0: "CONTRADICTION", 1: "NEUTRAL", 2: "ENTAILMENT"}) == 2
    assert entailment_index({"0": "entailment", "1": "not_entailment_x"} | {"1": "neutral"}) == 0
    with pytest.raises(UserError, match="no single entailment label"):
        entailment_index({0: "LABEL_0", 1: "LABEL_1"})


def _tiny_nli_dir(path, id2label, favoured):
    """A random DeBERTa-v2 classifier whose bias makes class `favoured` win for every input."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification, PreTrainedTokenizerFast
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "paris", "london", "france"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   sep_token="[SEP]", cls_token="[CLS]")
    config = DebertaV2Config(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32, max_position_embeddings=64, type_vocab_size=0,
                             num_labels=3, id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model = DebertaV2ForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([10.0 if i == favoured else 0.0 for i in range(3)]))
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


@pytest.mark.slow   # torch + transformers import
def test_nli_judge_reads_entailment_from_config(tmp_path):
    # ENTAILMENT at index 0 (not MNLI's 2) and the model always predicts 0: everything is equivalent.
    d = _tiny_nli_dir(tmp_path / "nli", {0: "ENTAILMENT", 1: "NEUTRAL", 2: "CONTRADICTION"}, favoured=0)
    judge = make_judge("nli", nli_dir=str(d))
    assert judge.entail == 0
    assert judge.equivalence(["paris", "paris france", "london"]).all()
    assert judge._text("paris", "london", "q") == "paris [SEP] london"
    judge.with_question = True
    assert judge._text("paris", "london", "where") == "where paris [SEP] where london"
    # A model favouring index 2, which is CONTRADICTION in this config: nothing is equivalent.
    d2 = _tiny_nli_dir(tmp_path / "nli2", {0: "ENTAILMENT", 1: "NEUTRAL", 2: "CONTRADICTION"}, favoured=2)
    eq = make_judge("nli", nli_dir=str(d2)).equivalence(["paris", "london"])
    assert eq.tolist() == [[True, False], [False, True]]
    # A directory whose config does not load is one line too.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "deberta-v2", "vocab_size": "x"}))
    (broken / "model.safetensors").write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot load the NLI model") as e:
        make_judge("nli", nli_dir=str(broken))
    assert "\n" not in str(e.value)


def test_nli_bad_directory_is_one_line(tmp_path):
    with pytest.raises(UserError, match="has no config.json"):
        make_judge("nli", nli_dir=str(tmp_path / "missing"))
    with pytest.raises(UserError, match="needs --nli_dir"):
        make_judge("nli")


@pytest.mark.slow   # torch + sentence-transformers import
def test_embedding_judge_packaged_minilm_offline(tmp_path, capsys):
    judge = make_judge("embedding", cache_dir=str(tmp_path / "minilm"), embedding_threshold=0.8)
    eq = judge.equivalence(["Paris", "paris, France", "London"])
    assert eq[0, 1] and not eq[0, 2] and not eq[1, 2]
    assert "Extract" not in capsys.readouterr().out     # the package's prints stay out of our output
