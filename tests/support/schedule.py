"""Order test files for pytest-xdist so that the workers finish together.

`make test` runs `--dist loadfile`: each test file is one work unit, handed to whichever worker is
free. xdist's default order (most tests first) sends a file of three 25-second end-to-end tests
last, and one worker then runs it alone while the other idles. Handing out the longest files first
(longest-processing-time-first scheduling) keeps both workers busy to the end.

A file's weight is its measured seconds: from the last local run (`.cache/test-file-seconds.json`,
rewritten after every run) or, on a fresh clone such as CI's, from `SECONDS_MEASURED` below (a cold
2-core run). Files in neither count as short and keep their collection order after the long ones.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

MEASURED_FILE = Path(__file__).resolve().parents[2] / ".cache" / "test-file-seconds.json"

SECONDS_MEASURED = {
    # A cold fresh-clone `CI=true .ci/run` on the 2-core machine (2026-12-07, every other process paused):
    # seconds per file (setup + call + teardown), files over 4 s.
    "tests/benchmarks/test_benchmark_smoke.py": 101,
    "tests/aot/test_pod_configs.py": 62,
    "tests/finetune/test_finetune_run.py": 59,
    "tests/trainer/test_trainer_runs.py": 49,
    "tests/trainer/test_sharded_runs.py": 40,
    "tests/hf/test_gguf_import.py": 31,
    "tests/decoding/test_decode_engine.py": 27,
    "tests/decoding/test_multi_device.py": 24,
    "tests/trainer/test_cpu_fast_path.py": 24,
    "tests/patch/test_two_stage.py": 23,
    "tests/aot/test_aot_compile.py": 21,
    "tests/lm_eval/test_lm_eval_harness.py": 20,
    "tests/model/test_model_forward.py": 15,
    "tests/dynamicqa/test_sampling_engine.py": 13,
    "tests/decoding/test_decoding_cache.py": 13,
    "tests/execution/test_adversarial.py": 13,
    "tests/evals_api/test_openai_sdk.py": 13,
    "tests/trainer/test_trainer_units.py": 11,
    "tests/decoding/test_shared_prefill.py": 11,
    "tests/evals_api/test_server_client.py": 10,
    "tests/checkpointing/test_multihost.py": 10,
    "tests/data/test_pipeline.py": 9,
    "tests/trainer/test_entry_and_hooks.py": 9,
    "tests/checkpointing/test_resume.py": 9,
    "tests/hf/test_hf_parity.py": 9,
    "tests/patch/test_plan_and_errors.py": 8,
    "tests/patch/test_gin_bindings.py": 8,
    "tests/decoding/test_engine_rows.py": 7,
    "tests/decoding/test_generate_cli.py": 6,
    "tests/case2code_synthesis/test_resume_and_bad_input.py": 6,
    "tests/case2code_synthesis/test_real_kill.py": 5,
    "tests/execution/test_tiers.py": 5,
    "tests/report/test_report.py": 5,
    "tests/model/test_patch_mode.py": 5,
    "tests/execution/test_case2code_real.py": 4,
    "tests/evals_api/test_backends.py": 4,
    "tests/data/test_row_store.py": 4,
    # Only where the `interop` extra is installed (else it skips at once): measured alone, 2026-12-07, 141-200 s.
    "tests/interop/test_llamacpp_server.py": 200,
}


def file_seconds() -> dict[str, float]:
    """The committed weights, overridden by the last local run's measurements where there are any."""
    weights = dict(SECONDS_MEASURED)
    try:
        weights.update({k: float(v) for k, v in json.loads(MEASURED_FILE.read_text()).items()})
    except (OSError, ValueError, AttributeError):
        pass  # no local measurement yet (fresh clone) or an unreadable one: the committed table stands
    return weights


def longest_first(items: list, file_of) -> list:
    """`items` with whole files kept together, the heaviest files first, ties in collection order."""
    weights = file_seconds()
    first_seen: dict[str, int] = {}
    for item in items:
        first_seen.setdefault(file_of(item), len(first_seen))
    return sorted(items, key=lambda item: (-weights.get(file_of(item), 0.0), first_seen[file_of(item)]))


def record_file_seconds(durations: Iterable[tuple[str, float]]) -> None:
    """Merge this run's seconds per file into the local measurements (atomically)."""
    totals: dict[str, float] = {}
    for path, seconds in durations:
        totals[path] = totals.get(path, 0.0) + seconds
    if not totals:
        return
    try:
        known = json.loads(MEASURED_FILE.read_text())
    except (OSError, ValueError):
        known = {}
    known.update({k: round(v, 1) for k, v in totals.items()})
    MEASURED_FILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = MEASURED_FILE.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(dict(sorted(known.items())), indent=1))
    os.replace(tmp, MEASURED_FILE)
