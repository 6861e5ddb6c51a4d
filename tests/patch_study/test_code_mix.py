"""The stdlib + site-packages corpus: the house's split rule per root, caching, malformed files counted."""
import json
from pathlib import Path

import pytest

from patch_training.data import code_mix, corpora
from patch_training.errors import UserError


def _tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


@pytest.fixture
def roots(tmp_path, monkeypatch):
    stdlib, site = tmp_path / "stdlib", tmp_path / "site"
    _tree(stdlib, {f"mod{i}.py": f"x = {i}\n".encode() for i in range(40)})
    _tree(site, {f"pkga/sub/m{i}.py": f"def f{i}():\n    return {i}\n".encode() for i in range(40)})
    _tree(site, {"pkga/bad.py": b"\xff\xfe not utf-8", "pkga/empty.py": b"  \n"})
    monkeypatch.setattr(corpora, "default_code_root", lambda: stdlib)
    monkeypatch.setattr(code_mix, "site_packages_root", lambda: site)
    return stdlib, site, tmp_path / "cache"


def _ids(path: str) -> list[str]:
    return [json.loads(line)["id"] for line in Path(path).read_text().splitlines()]


def test_splits_follow_the_code_corpus_rule(roots):
    stdlib, site, cache = roots
    info = code_mix.build_code_mix(cache, code_mix.mix_roots(["pkga"]), validation_fraction=0.2)
    val = set(_ids(info["files"]["validation"]))
    train = set(_ids(info["files"]["train"]))
    assert not val & train
    expect = corpora.split_files(stdlib, corpora.list_corpus_files(stdlib), 0.2)
    assert {f"stdlib:{p.name}" for p in expect["validation"]} == {i for i in val if i.startswith("stdlib:")}
    assert {i.split(":")[0] for i in val} == {"stdlib", "pkga"}
    assert info["row_report"]["malformed"] == 1 and info["row_report"]["empty"] == 1
    assert sum(info["documents"]["train"].values()) + sum(info["documents"]["validation"].values()) == 80
    # Hash order: the first documents already come from both roots (a max_tokens prefix mixes them).
    first = _ids(info["files"]["train"])[:10]
    assert {i.split(":")[0] for i in first} == {"stdlib", "pkga"}


def test_cached_and_registered(roots):
    _, _, cache = roots
    name = code_mix.register_code_mix_corpus(name="mix_test", packages=["pkga"], cache_dir=str(cache))
    from patch_training.data.tasks import get_source
    assert name == "mix_test" and get_source(name).kind == "jsonl"
    (info_path,) = cache.glob("corpora/mix-*/code_mix.json")
    stamp = info_path.stat().st_mtime_ns
    code_mix.register_code_mix_corpus(name="mix_test", packages=["pkga"], cache_dir=str(cache))
    assert info_path.stat().st_mtime_ns == stamp


def test_missing_package_is_one_line(roots):
    with pytest.raises(UserError, match="not installed"):
        code_mix.mix_roots(["no_such_pkg"])
