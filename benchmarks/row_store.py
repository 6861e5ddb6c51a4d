"""The row store at scale, measured on this machine: preprocessing rate, and hosts reading only their rows.

`python -m benchmarks.row_store [--corpus_mb 64] [--files 8] [--vocab_model tokenizer.model]
    [--worker_counts 1 2] [--dataflow_workers 16 64 256] [--host_steps 50] [--batch 16]`

1. Preprocess: a synthetic JSONL corpus (`--files` shards, `--corpus_mb` MB of words) into a store with
   `patch_training.data.store_build` on Beam's DirectRunner in multi-process mode, once per worker count
   (each run from scratch). Reports corpus tokens/s of the whole build (tokenize + write) and of its
   tokenize stage, and from the 1-worker rate the hours 360B tokens take with N Dataflow workers, assuming
   each Dataflow worker tokenizes like one process here and the measured 1→2 scaling efficiency holds
   (the build parallelizes over input units, so it also needs at least N input shards).
2. Input pipeline vs trainer: `host_batch` + the trainer's device transfer on the store (with the trainer's
   read-ahead thread), as `benchmarks.input_pipeline` measures the memmap cache, against the tokens/s of
   the `--model_gin` train step at the same batch shape.
3. Hosts: 2 JAX processes × 4 fake CPU devices (jax.distributed over gloo, as the multi-host tests run),
   each opening the store and feeding `host_batch(step, B, process_index, 2)` into the trainer's
   `global_batch` for `--host_steps` steps. Each counts the rows and bytes it read; the parent checks the
   two id sets of every step are disjoint and make up the global batch.
Prints one JSON object as its last line.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOKENS_360B = 360e9


def write_corpus(out: Path, files: int, megabytes: float, seed: int = 0) -> list[str]:
    import numpy as np
    rng = np.random.default_rng(seed)
    words = np.array(["def", "return", "self", "import", "the", "of", "value", "index", "for", "in", "while",
                      "data", "model", "token", "patch", "x", "y", "if", "else", "print", "(", ")", ":"])
    per_file = int(megabytes * 1e6 / files)
    paths = []
    for i in range(files):
        p = out / f"shard-{i:03d}.jsonl"
        written = 0
        with open(p, "w") as f:
            while written < per_file:
                text = " ".join(rng.choice(words, size=int(rng.integers(20, 2000))))
                line = json.dumps({"text": text})
                f.write(line + "\n")
                written += len(line) + 1
        paths.append(str(p))
    return paths


def preprocess_rate(task: str, vocab, root: Path, workers: int, running_mode: str, length: int) -> dict:
    from patch_training.data import store_build
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    out = store_build.build_store(root=str(root), task=task, split="train", sequence_length=length, concat=True,
                                  vocab=vocab, workers=workers, rows_per_shard=4096,
                                  pipeline_args=[f"--direct_running_mode={running_mode}"])
    seconds = time.perf_counter() - t0
    meta = json.loads((Path(out) / "meta.json").read_text())
    return {"workers": workers, "seconds": seconds, "corpus_tokens": meta["corpus_tokens"],
            "tokens_per_s": meta["corpus_tokens"] / seconds,
            "tokenize_tokens_per_s": meta["corpus_tokens"] / max(meta["tokenize_seconds"], 1e-9),
            "rows": meta["num_rows"], "shards": len(meta["shards"]), "store_dir": out}


def extrapolate(one: float, efficiency: float, workers: list[int]) -> dict:
    """Hours for 360B tokens with N workers at the 1-process rate, scaled by the measured efficiency."""
    return {str(n): TOKENS_360B / (one * n * min(1.0, efficiency)) / 3600 for n in workers}


def input_vs_trainer(task: str, vocab: dict, store_dir: str, args) -> dict:
    from benchmarks.input_pipeline import pipeline_tokens_per_s, trainer_tokens_per_s
    from benchmarks.train_throughput import DEFAULT_NUMERICS, load_model_config
    from patch_training.data import make_dataset
    from patch_training.data.prefetch import with_prefetch
    ds = make_dataset(task=task, split="train", sequence_length=args.sequence_length, concat=True, vocab=vocab,
                      row_stores={task: str(Path(store_dir).parent)})
    pipe = pipeline_tokens_per_s(with_prefetch(ds), args.batch, args.pipeline_steps)
    cfg = load_model_config(args.model_gin, DEFAULT_NUMERICS)
    trainer = trainer_tokens_per_s(cfg, args.batch, args.sequence_length, 1, args.trainer_steps)
    return {**pipe, "trainer_tokens_per_s": trainer, "model_gin": args.model_gin,
            "headroom": pipe["pipeline_tokens_per_s"] / trainer}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def host_worker(args) -> None:
    """One of the 2 processes: read this host's rows of each step, hand them to the trainer's global batch."""
    import jax
    import numpy as np
    from patch_training import multihost
    multihost.use_gloo_cpu_collectives()
    multihost.initialize_distributed(f"localhost:{args.port}", 2, args.worker)
    from patch_training.data.row_store import open_store
    from patch_training.data.step_dataset import StepIndexedDataset
    from patch_training.data.walk import host_slice
    from patch_training.partitioning import global_batch, make_mesh
    ds = StepIndexedDataset(args.store, seed=0, opened=open_store(args.store))
    mesh = make_mesh((-1, 1, 1))
    pi, pc = jax.process_index(), jax.process_count()
    ids, t0 = [], time.perf_counter()
    for step in range(args.host_steps):
        batch = global_batch(ds.host_batch(step, args.batch, pi, pc), mesh)
        jax.block_until_ready(batch)
        assert batch["decoder_target_tokens"].shape == (args.batch, ds.sequence_length)
        ids.append(ds.global_row_ids(step, args.batch)[host_slice(args.batch, pi, pc)].tolist())
    seconds = time.perf_counter() - t0
    multihost.sync_global_devices("row_store_hosts_done")
    print(json.dumps({"process": pi, "devices": jax.local_device_count(), "rows_read": ds._reader.rows_read,
                      "bytes_read": ds._reader.bytes_read, "seconds": seconds,
                      "tokens_per_s": ds._reader.rows_read * ds.sequence_length / seconds,
                      "ids": ids, "store_rows": ds.num_rows, "row_bytes": ds._reader.row_bytes}), flush=True)


def two_hosts(store: str, steps: int, batch: int) -> dict:
    port = str(_free_port())
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(var, None)
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.row_store", "--worker", str(i), "--port", port,
                               "--store", store, "--host_steps", str(steps), "--batch", str(batch)],
                              cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (0, 1)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            for q in procs:
                q.kill()
            raise RuntimeError(f"host process failed:\n{err[-3000:]}")
        # raw_decode: Gloo's C++ logging shares the child's stdout and may land on the same line after the JSON.
        line = next(line for line in reversed(out.splitlines()) if line.startswith('{"process"'))
        outs.append(json.JSONDecoder().raw_decode(line)[0])
    outs.sort(key=lambda r: r["process"])
    partition = all(not set(a) & set(b) and len(a) + len(b) == batch
                    for a, b in zip(outs[0]["ids"], outs[1]["ids"]))
    per_process = [{k: r[k] for k in ("process", "devices", "rows_read", "bytes_read", "seconds", "tokens_per_s")}
                   for r in outs]
    return {"steps": steps, "global_batch": batch, "store_rows": outs[0]["store_rows"],
            "global_batch_bytes": batch * outs[0]["row_bytes"], "per_process": per_process,
            "halves_partition_each_step": partition,
            "each_reads_half": all(r["rows_read"] == steps * batch // 2 for r in outs)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus_mb", type=float, default=64.0)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--sequence_length", type=int, default=2048)
    parser.add_argument("--vocab_model", default=None, help="a SentencePiece model (default: the byte vocabulary)")
    parser.add_argument("--worker_counts", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--running_mode", default="multi_processing", choices=("multi_processing", "in_memory"))
    parser.add_argument("--dataflow_workers", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--host_steps", type=int, default=50)
    parser.add_argument("--pipeline_steps", type=int, default=100)
    parser.add_argument("--trainer_steps", type=int, default=3)
    parser.add_argument("--model_gin", default="configs/models/small.gin")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", default=None, help="work dir (default: a temporary one, removed)")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--store", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(None if argv is None else [str(a) for a in argv])
    if args.worker is not None:
        host_worker(args)
        return {}

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    from patch_training.data import register_jsonl_corpus
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="row_store_bench."))
    try:
        (work / "corpus").mkdir(parents=True, exist_ok=True)
        files = write_corpus(work / "corpus", args.files, args.corpus_mb)
        task = register_jsonl_corpus(name="bench_store", train_files=files)
        vocab = ({"kind": "sentencepiece", "model_path": args.vocab_model} if args.vocab_model
                 else {"kind": "byte"})
        runs = [preprocess_rate(task, vocab, work / f"store_w{w}", w, args.running_mode, args.sequence_length)
                for w in args.worker_counts]
        one = next((r for r in runs if r["workers"] == 1), runs[0])
        two = next((r for r in runs if r["workers"] == 2), None)
        efficiency = two["tokens_per_s"] / (2 * one["tokens_per_s"]) if two else 1.0
        pipeline = input_vs_trainer(task, vocab, runs[-1]["store_dir"], args)
        hosts = two_hosts(runs[-1]["store_dir"], args.host_steps, args.batch) if args.host_steps else None
        result = {"benchmark": "row_store", "vocab": vocab["kind"], "corpus_mb": args.corpus_mb,
                  "files": args.files, "running_mode": args.running_mode, "sequence_length": args.sequence_length,
                  "preprocess": [{k: v for k, v in r.items() if k != "store_dir"} for r in runs],
                  "scaling_efficiency_1_to_2": efficiency if two else None,
                  "hours_for_360B_tokens_by_dataflow_workers": extrapolate(one["tokens_per_s"], efficiency,
                                                                           args.dataflow_workers),
                  "input_pipeline": pipeline, "two_hosts": hosts}
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
