"""Evals use the whole host (issue 27): on 8 fake CPU devices the engine splits its rows over every device,
and greedy answers, seeded samples and scores are those of one device."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.xla_env import subprocess_env

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def result() -> dict:
    proc = subprocess.run([sys.executable, "-m", "tests.decoding.run_multi_device"], cwd=REPO,
                          env=subprocess_env(devices=8), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_rows_really_split_over_eight_devices(result):
    assert result["one"]["devices"] == 1 and result["eight"]["devices"] == 8
    # The server asked for 3 rows: rounded up to one per device, the cache spread over all eight.
    assert result["eight"]["engine"] == {**result["eight"]["engine"], "rows": 8, "cache_devices": 8,
                                         "cache_shard_rows": 1}
    assert result["one"]["engine"]["rows"] == 3 and result["one"]["engine"]["cache_devices"] == 1


def test_eight_devices_give_one_devices_answers(result):
    one, eight = result["one"], result["eight"]
    assert [len(t) for t in one["greedy"]] == [12, 5, 9, 16, 3, 7, 10, 4, 14, 6, 8, 11]
    assert eight["greedy"] == one["greedy"]
    assert eight["sampled"] == one["sampled"]          # per-row keys: a sample ignores where its row sits
    assert eight["engine"]["served"] == one["engine"]["served"]
    assert eight["top_ids"] == one["top_ids"]
    assert result["max_abs_logprob_diff"] < 1e-5
