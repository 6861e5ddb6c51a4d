"""`Checkpoint.open`, the one checkpoint opener: the three layouts, placement, and one line per bad input."""
import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from patch_training.checkpoint_manifest import ORBAX_COMMIT_MARKER, write_manifest
from patch_training.contract.checkpoint import Checkpoint, params_fingerprint
from patch_training.errors import UserError
from patch_training.model import ModelConfig, init_params
from patch_training.params_io import save_params

CFG = ModelConfig(vocab_size=264, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(params checkpoint dir, the params written into it)."""
    import flax.linen as nn
    params = nn.unbox(init_params(CFG, jax.random.key(5)))
    return save_params(tmp_path_factory.mktemp("open") / "ckpt", params, CFG, {"kind": "byte"}), params


def _same(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return (jax.tree.structure(a) == jax.tree.structure(b)
            and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb)))


def _run_dir(ckpt: Path, root: Path, complete=(5,), partial=(7,)) -> Path:
    """A trainer run dir whose steps hold the checkpoint's params; the `partial` ones lack our completeness
    manifest (a save cut short), so they do not count."""
    root.mkdir()
    for name in ("model_config.json", "vocab.json"):
        shutil.copy2(ckpt / name, root / name)
    for step in (*complete, *partial):
        step_dir = root / "checkpoints" / str(step)
        shutil.copytree(ckpt / "params", step_dir / "params")
        if step in complete:
            write_manifest(step_dir, step)
        (step_dir / ORBAX_COMMIT_MARKER).write_text("")
    return root


def _one_line(excinfo) -> str:
    text = str(excinfo.value)
    assert "\n" not in text, text
    return text


def test_params_checkpoint_opens_into_config_vocabulary_and_params(saved):
    path, params = saved
    ckpt = Checkpoint.open(path)
    assert (ckpt.path, ckpt.layout, ckpt.step) == (Path(path).absolute(), "params", None)
    assert ckpt.config == CFG and ckpt.vocab_spec == {"kind": "byte"}
    assert _same(ckpt.params, params)
    assert ckpt.params_fingerprint == params_fingerprint(params)
    assert ckpt.vocabulary is ckpt.vocabulary and ckpt.vocabulary.vocab_size == 259   # opened once, kept


def test_config_only_then_params_placed_and_cast(saved):
    path, params = saved
    light = Checkpoint.open(path, params=False, model_overrides={"remat_policy": "full"})
    assert light.params is None and light.config.remat_policy == "full"
    vocab = light.vocabulary
    with pytest.raises(UserError, match="opened without params"):
        light.params_fingerprint
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    loaded = light.with_params(shardings=jax.tree.map(lambda _: device, params), dtype=jnp.bfloat16)
    assert loaded.vocabulary is vocab and loaded.config == light.config and loaded.step is None
    leaves = jax.tree.leaves(loaded.params)
    assert {x.dtype for x in leaves} == {jnp.dtype(jnp.bfloat16)} and all(x.sharding == device for x in leaves)
    np.testing.assert_array_equal(np.asarray(loaded.params["embedding"], np.float32),
                                  np.asarray(jnp.asarray(params["embedding"], jnp.bfloat16), np.float32))


def test_run_dir_reads_its_newest_complete_step_or_the_one_asked_for(saved, tmp_path):
    path, params = saved
    run = _run_dir(path, tmp_path / "run", complete=(3, 5), partial=(7,))
    newest = Checkpoint.open(run)
    assert (newest.layout, newest.step) == ("run", 5) and _same(newest.params, params)
    assert str(newest) == f"{run} (step 5)"
    assert Checkpoint.open(run, step=3, params=False).step == 3
    with pytest.raises(UserError) as e:
        Checkpoint.open(run, step=7)
    assert "step 7" in _one_line(e) and "manifest" in _one_line(e)


def test_hf_directory_is_told_by_its_files(saved, tmp_path):
    from patch_training.hf_convert import export_hf
    path, params = saved
    hf = export_hf(path, tmp_path / "hf")
    ckpt = Checkpoint.open(hf)
    assert ckpt.layout == "hf" and ckpt.step is None and ckpt.vocab_spec is None   # a byte model carries no tokenizer
    assert ckpt.config.hidden_size == CFG.hidden_size and _same(ckpt.params, params)
    with pytest.raises(UserError) as e:
        Checkpoint.open(hf, hf=False)
    assert str(hf) in _one_line(e) and "neither a params checkpoint" in _one_line(e)


def _broken(saved, tmp_path, name: str, edit) -> Path:
    path, _ = saved
    bad = tmp_path / name
    shutil.copytree(path, bad)
    edit(bad)
    return bad


def _rewrite(file: str, text: str):
    return lambda d: (d / file).write_text(text)


def _patch_config(**fields):
    return lambda d: (d / "model_config.json").write_text(
        json.dumps({**json.loads((d / "model_config.json").read_text()), **fields}))


@pytest.mark.parametrize("name, edit, expect", [
    ("no_config", lambda d: (d / "model_config.json").unlink(), "model config not found: {bad}/model_config.json"),
    ("config_not_json", _rewrite("model_config.json", "{oops"), "model config {bad}/model_config.json is not valid JSON"),
    ("config_unknown_field", _patch_config(colour="red"), "{bad}/model_config.json: model config: unknown field"),
    ("config_other_shapes", _patch_config(hidden_size=48), "checkpoint {bad}/params: parameters do not match"),
    ("vocab_not_json", _rewrite("vocab.json", "["), "vocab spec {bad}/vocab.json is not valid JSON"),
    ("vocab_unknown_kind", _rewrite("vocab.json", '{"kind": "words"}'), "{bad}/vocab.json: expected {{\"kind\""),
    ("vocab_names_missing_file", _rewrite("vocab.json", '{"kind": "sentencepiece", "model_path": "sp.model"}'),
     "{bad}/vocab.json names tokenizer file {bad}/sp.model, which does not exist"),
    ("params_metadata_garbled", lambda d: (d / "params" / "_METADATA").write_text("garbage"),
     "checkpoint {bad}/params: cannot read params checkpoint metadata"),
])
def test_each_bad_checkpoint_is_one_line_naming_the_file(saved, tmp_path, name, edit, expect):
    bad = _broken(saved, tmp_path, name, edit)
    with pytest.raises(UserError) as e:
        Checkpoint.open(bad)
    assert expect.format(bad=bad) in _one_line(e)


def test_bad_requests_are_one_line(saved, tmp_path):
    path, _ = saved
    cases = [
        (dict(path=None), "no checkpoint given"),
        (dict(path=tmp_path / "missing"), f"checkpoint directory not found: {tmp_path / 'missing'}"),
        (dict(path=tmp_path), f"{tmp_path} is neither a params checkpoint"),
        (dict(path=path, step=3), "is a params checkpoint: it has no trainer steps"),
        (dict(path=path, model_overrides={"hidden_size": 64}), "may not change hidden_size"),
        (dict(path=path, model_overrides={"colour": "red"}), "unknown ModelConfig field(s) ['colour']"),
        (dict(path=tmp_path / "missing_hf", hf=True), f"HF directory not found: {tmp_path / 'missing_hf'}"),
    ]
    for kwargs, expect in cases:
        p = kwargs.pop("path")
        with pytest.raises(UserError) as e:
            Checkpoint.open(p, **kwargs)
        assert expect in _one_line(e), (kwargs, str(e.value))
    empty_run = tmp_path / "empty_run"
    (empty_run / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError) as e:
        Checkpoint.open(empty_run)
    assert f"run directory {empty_run} has no complete checkpoint" in _one_line(e)


def test_a_run_vocabulary_must_be_the_checkpoints(saved, tmp_path):
    path, _ = saved
    assert Checkpoint.open(path, params=False, vocab={"kind": "byte"}).vocab_spec == {"kind": "byte"}
    bare = _broken(saved, tmp_path, "no_vocab", lambda d: (d / "vocab.json").unlink())
    assert Checkpoint.open(bare, params=False).vocab_spec is None        # token ids only: still opens
    with pytest.raises(UserError) as e:
        Checkpoint.open(bare, params=False, vocab={"kind": "byte"})
    assert "tokenize with the checkpoint's" in _one_line(e)
