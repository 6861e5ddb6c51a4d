"""One tiny byte-vocabulary checkpoint, its in-process model, and a live server on localhost (module-shared)."""
import jax
import pytest

from patch_training.model import ModelConfig, init_params
from patch_training.params_io import save_params

CFG = ModelConfig(vocab_size=264, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_params):
    return save_params(tmp_path_factory.mktemp("evals_api") / "ckpt", tiny_params, CFG, {"kind": "byte"})


@pytest.fixture(scope="session")
def tiny_params():
    return init_params(CFG, jax.random.key(7))


@pytest.fixture(scope="session")
def jax_model(tiny_params):
    """Built in memory (loading from disk is covered once, in test_backends)."""
    from evals.backends.jax_backend import JaxModel
    from evals.backends.text_vocab import byte_text_vocab
    return JaxModel(CFG, tiny_params, byte_text_vocab(), batch_size=4)


@pytest.fixture(scope="session")
def live_server(jax_model):
    from tests.support.serving import running_server
    with running_server(jax_model, model_name="tiny", context=256) as (_, url):
        yield url
