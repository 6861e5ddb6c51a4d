"""RunLayout: one answer for every path of a run, the manifest kept in stage order, the shell CLI on top."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from patch_training.contract.layout import CACHE_NAME, RunLayout, cache_dir, files_fingerprint, record_file
from patch_training.errors import UserError


def test_paths(tmp_path):
    lay = RunLayout(tmp_path)
    assert lay.stage_dir("pretrain") == tmp_path and lay.stage_dir("finetune") == tmp_path / "finetune_direct"
    assert lay.eval_dir("case2code", "patch", "official") == tmp_path / "evals" / "case2code" / "patch" / "official"
    assert lay.record_path("dynamicqa", "patch") == tmp_path / "evals" / "dynamicqa" / "patch" / "record.json"
    assert cache_dir(tmp_path / "o") == tmp_path / "o" / CACHE_NAME and record_file("o").name == "record.json"
    with pytest.raises(UserError, match="unknown stage 'train'"):
        lay.stage_dir("train")
    assert lay.eval_root("solverlearner") == tmp_path / "evals" / "solverlearner"
    with pytest.raises(UserError, match="bad model name '../x'"):
        lay.eval_dir("case2code", "../x")
    with pytest.raises(UserError, match="bad part name '.hidden'"):
        lay.eval_dir("case2code", "patch", ".hidden")


def _ckpt(root, name, content=b"w"):
    d = root / name
    d.mkdir(parents=True)
    (d / "params.bin").write_bytes(content)
    return d


def test_manifest_keeps_stage_order_replaces_in_place_and_stores_relative_paths(tmp_path):
    lay = RunLayout(tmp_path)
    assert lay.models() == []
    lay.add_model("patch", _ckpt(tmp_path, "stage2_token"), "10_pretrain")
    outside = _ckpt(tmp_path.parent / f"{tmp_path.name}_elsewhere", "hf")
    lay.add_model("real", outside, "12_pretrained", kind="pretrained", source="/m/x.gguf", info={"sha256": "ab"})
    first = lay.model("patch").fingerprint
    (tmp_path / "stage2_token" / "params.bin").write_bytes(b"retrained")
    lay.add_model("patch", tmp_path / "stage2_token", "10_pretrain")
    models = lay.models()
    assert [m.name for m in models] == ["patch", "real"]              # re-added in place
    assert models[0].checkpoint == "stage2_token" and models[0].fingerprint != first
    assert models[1].checkpoint == str(outside.resolve()) and models[1].info == {"sha256": "ab"}
    assert lay.checkpoint_path(models[0]) == tmp_path / "stage2_token"
    with pytest.raises(UserError, match="no checkpoint at"):
        lay.add_model("ghost", tmp_path / "nope", "35_finetune")


def test_a_broken_manifest_is_one_line(tmp_path):
    lay = RunLayout(tmp_path)
    lay.manifest_path.write_text(json.dumps({"schema_version": 1, "models": [{"name": "x"}]}))
    with pytest.raises(UserError, match="model 0 is not a manifest entry"):
        lay.models()
    lay.manifest_path.write_text("[]")
    with pytest.raises(UserError, match="manifest schema_version"):
        lay.models()


def test_files_fingerprint_follows_content_not_hidden_files(tmp_path):
    d = _ckpt(tmp_path, "m", b"abc")
    before = files_fingerprint(d)
    (d / ".lock").write_text("x")
    assert files_fingerprint(d) == before
    (d / "params.bin").write_bytes(b"abd")
    assert files_fingerprint(d) != before


def test_eval_records_come_in_manifest_order_then_the_other_rows(tmp_path):
    lay = RunLayout(tmp_path)
    for name in ("zeta", "alpha"):
        lay.add_model(name, _ckpt(tmp_path, name), "s")
    for model, part in (("alpha", "official"), ("alpha", "synthetic"), ("zeta", "official"), ("oracle", None)):
        path = lay.record_path("e", model, part)
        path.parent.mkdir(parents=True)
        path.write_text("{}")
    (tmp_path / "evals" / "e" / "zeta" / "gen_cache").mkdir()              # not a part: it holds no record
    got = [(m, p) for m, p, _ in lay.eval_records("e")]
    assert got == [("zeta", "official"), ("alpha", "official"), ("alpha", "synthetic"), ("oracle", None)]
    assert lay.eval_records("absent") == []


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "patch_training.main.run_layout", *map(str, args)],
                          capture_output=True, text=True)


def test_cli_adds_lists_and_answers_paths(tmp_path):
    ckpt = _ckpt(tmp_path, "baseline")
    assert _cli("add", tmp_path, "--name", "baseline", "--checkpoint", ckpt, "--stage", "15_baseline").returncode == 0
    _ckpt(tmp_path, "gone")
    assert _cli("add", tmp_path, "--name", "gone", "--checkpoint", tmp_path / "gone", "--stage", "x").returncode == 0
    (tmp_path / "gone" / "params.bin").unlink()
    (tmp_path / "gone").rmdir()
    out = _cli("models", tmp_path)
    assert out.stdout == f"baseline {ckpt}\n" and "'gone' left out" in out.stderr
    assert _cli("models", tmp_path, "--only", "nobody").stdout == ""
    assert (_cli("has", tmp_path, "baseline").returncode, _cli("has", tmp_path, "x").returncode) == (0, 1)
    assert _cli("eval", tmp_path, "case2code", "baseline", "official").stdout.strip() == \
        str(tmp_path / "evals" / "case2code" / "baseline" / "official")
    bad = _cli("add", tmp_path, "--name", "x", "--checkpoint", ckpt, "--stage", "s", "--info", "[1]")
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --info must be a JSON object"
