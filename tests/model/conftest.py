"""Shared tiny model fixtures for the model tests (kept small: 2 CPU cores are shared)."""
import jax
import pytest

from patch_training.model import ModelConfig, init_params

TINY = dict(vocab_size=97, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4,
            num_kv_heads=2, rope_theta=500000.0)


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    return ModelConfig(**TINY)


@pytest.fixture(scope="session")
def tiny_params(tiny_config):
    return init_params(tiny_config, jax.random.key(0))
