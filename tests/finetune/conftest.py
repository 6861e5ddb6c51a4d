"""Shared fixtures for the fine-tuning tests: small Case2Code-shaped rows, one row cache, one tiny checkpoint."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

SEQ_LEN = 128
TINY = dict(vocab_size=384, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
            max_seq_len=128, scan_layers=True)
LONG_PROMPT_BYTES = 300


def make_rows(n: int, seed: int, prefix: str) -> list[dict]:
    """ASCII rows (byte vocabulary: one token per byte) with varied prompt and answer lengths."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a = rng.randint(0, 9)
        xs = [rng.randint(0, 30) for _ in range(rng.randint(1, 3))]
        prompt = f"# {prefix}{i}\n" + "".join(f"f({x}) == {x + a}\n" for x in xs) + "f?"
        rows.append({"id": f"{prefix}{i}", "prompt": prompt, "output": f"def f(x):\n    return x + {a}" + "#" * rng.randint(0, 12)})
    return rows


def write_jsonl(path: Path, rows: list) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


@pytest.fixture(scope="session")
def c2c_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("c2c")
    train = make_rows(48, 0, "t")
    bad = ['{"id": "no_output", "prompt": "x"}', '{"id": "no_prompt", "output": "y"}', "not json at all"]
    long_row = {"id": "long", "prompt": "p" * LONG_PROMPT_BYTES, "output": "def g():\n    return 1"}
    write_jsonl(d / "train.jsonl", train[:20] + bad + [long_row] + train[20:])
    write_jsonl(d / "validation.jsonl", make_rows(8, 1, "v"))
    write_jsonl(d / "test.jsonl", make_rows(8, 2, "x"))
    return d


@pytest.fixture(scope="session")
def good_train_rows() -> list[dict]:
    return make_rows(48, 0, "t")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ft_cache")


@pytest.fixture(scope="session")
def train_rows(c2c_dir, cache_dir):
    from case2code_finetune import tasks
    from case2code_finetune.prompt_rows import make_prompt_answer_dataset
    from patch_training.data.vocab import byte_vocabulary
    name = tasks.register_case2code_dir(name="case2code", data_dir=str(c2c_dir))
    return make_prompt_answer_dataset(task=name, split="train", sequence_length=SEQ_LEN, vocab=byte_vocabulary(),
                                      cache_dir=str(cache_dir))


@pytest.fixture(scope="session")
def tiny_config():
    from patch_training.model import ModelConfig
    return ModelConfig(**TINY)


@pytest.fixture(scope="session")
def tiny_params(tiny_config):
    import jax
    from patch_training.model import init_params
    import flax.linen as nn
    return nn.unbox(init_params(tiny_config, jax.random.PRNGKey(7)))


@pytest.fixture(scope="session")
def init_ckpt(tmp_path_factory, tiny_params, tiny_config) -> Path:
    """A params checkpoint (params_io layout) of the tiny model with the byte vocabulary."""
    from patch_training.params_io import save_params
    return save_params(tmp_path_factory.mktemp("init") / "ckpt", tiny_params, tiny_config, {"kind": "byte"})
