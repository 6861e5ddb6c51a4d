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

`--stream`: a corpus several times larger than a memory cap, built and trained from under that cap
(`--corpus_gb 4 --mem_cap_gb 1.25 --vocab_model tokenizer.model --model_gin configs/models/tiny.gin
--out DIR`):
1. writes (or reuses, in `--out`) a synthetic JSONL corpus of `--corpus_gb` GB in 256 MB shards;
2. builds the store (concat rows, Beam DirectRunner, `--stream_workers` processes) in a child process
   under a cgroup v1 memory limit of `--mem_cap_gb` (page cache counts toward the limit and is reclaimed;
   anonymous memory cannot be, there is no swap), sampling the RSS of the child's whole process tree;
3. trains `--model_gin` for `--train_steps` steps from the store in a child under the same cap: seconds
   from process start to the first completed step, and the rows and bytes that process read;
4. the old design's price before step 1 on every host: the memmap cache built from a `--slice_mb` slice
   (tokenize + pack, timed, its disk), extrapolated to the whole corpus by tokens (labelled so).
Without `--mem_cap_gb` nothing is capped (the RSS is still sampled); where the cgroup cannot be made, one
line says so. Either mode prints one JSON object as its last line.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
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


# ---------------------------------------------------------------------------------------------------
# --stream: a corpus several times larger than a memory cap, preprocessed and trained from under it

STREAM_TASK = "stream_corpus"
STREAM_SHARD_MB = 256          # corpus shard size: Beam tokenizes one shard per task
STREAM_ROWS_PER_SHARD = 4096   # a store shard task holds ~rows × length tokens in memory at once
CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")
RSS_SAMPLE_S = 0.2


class MemoryCap:
    """A cgroup v1 memory limit for child processes, in a cgroup nested under this process's own.

    cgroup v1 charges page cache to the limit but reclaims it under pressure; anonymous memory it cannot
    reclaim (no swap), so a process tree whose anonymous memory outgrows the cap is OOM-killed."""

    def __init__(self, limit_bytes: int, label: str):
        from patch_training.errors import UserError
        self.limit, self.dir = int(limit_bytes), None
        own = None
        try:
            for line in Path("/proc/self/cgroup").read_text().splitlines():
                _, controllers, path = line.split(":", 2)
                if "memory" in controllers.split(","):
                    own = path
        except OSError as e:
            raise UserError(f"cannot cap memory: /proc/self/cgroup: {e.strerror}; run without --mem_cap_gb") from None
        if own is None or not (CGROUP_MEMORY / "memory.limit_in_bytes").exists():
            raise UserError(f"cannot cap memory: no cgroup v1 memory controller at {CGROUP_MEMORY}; "
                            "run without --mem_cap_gb")
        path = CGROUP_MEMORY / own.lstrip("/") / f"patchtrain-{label}-{os.getpid()}"
        try:
            path.mkdir()
            self.dir = path
            (path / "memory.limit_in_bytes").write_text(str(self.limit))
        except OSError as e:
            self.close()
            raise UserError(f"cannot cap memory: {path}: {e.strerror}; run without --mem_cap_gb") from None

    def wrap(self, cmd: list[str]) -> list[str]:
        """`cmd` started inside the cgroup (the shell joins it, then execs), with all its descendants."""
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.dir / "cgroup.procs"), *cmd]

    def stat(self) -> dict[str, int]:
        return {k: int(v) for k, v in (line.split() for line in (self.dir / "memory.stat").read_text().splitlines())}

    def report(self) -> dict:
        oom = dict(line.split() for line in (self.dir / "memory.oom_control").read_text().splitlines())
        return {"limit_bytes": self.limit,
                "max_usage_bytes_incl_page_cache": int((self.dir / "memory.max_usage_in_bytes").read_text()),
                "failcnt": int((self.dir / "memory.failcnt").read_text()), "oom_kills": int(oom.get("oom_kill", 0))}

    def close(self) -> None:
        if self.dir is None or not self.dir.exists():
            return
        for _ in range(50):  # stragglers of the child's tree (its own descendants) are ending
            pids = [int(p) for p in (self.dir / "cgroup.procs").read_text().split()]
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            self.dir.rmdir()


def _process_tree(pid: int) -> list[int]:
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{p}/task"):
                todo.extend(int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split())
    return tree


def _rss_kb(pid: int) -> tuple[int, int]:
    """(RssAnon, VmRSS) of one process in KiB; (0, 0) once it has gone."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        return int(fields.get("RssAnon", "0 kB").split()[0]), int(fields.get("VmRSS", "0 kB").split()[0])
    except (OSError, ValueError):
        return 0, 0


class RssSampler:
    """Peak memory of a child's whole process tree, sampled every RSS_SAMPLE_S seconds: anonymous memory
    (what a cap cannot reclaim) and VmRSS (shared library pages counted once per process); with a cap,
    also the cgroup's own `total_rss` (anonymous memory of all its processes, by the kernel)."""

    def __init__(self, pid: int, cap: MemoryCap | None):
        self.pid, self.cap = pid, cap
        self.peak = {"tree_rss_anon_bytes": 0, "tree_vm_rss_bytes": 0, "processes": 0}
        if cap:
            self.peak["cgroup_total_rss_bytes"] = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_S):
            tree = _process_tree(self.pid)
            sizes = [_rss_kb(p) for p in tree]
            now = {"tree_rss_anon_bytes": 1024 * sum(a for a, _ in sizes),
                   "tree_vm_rss_bytes": 1024 * sum(r for _, r in sizes), "processes": len(tree)}
            if self.cap:
                with contextlib.suppress(OSError, ValueError):
                    now["cgroup_total_rss_bytes"] = self.cap.stat().get("total_rss", 0)
            for k, v in now.items():
                self.peak[k] = max(self.peak[k], v)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        return dict(self.peak)


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _last_json(out: str) -> dict | None:
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                return json.loads(line)
    return None


def run_capped(argv: list[str], cap: MemoryCap | None, log: Path) -> dict:
    """`python -m benchmarks.row_store <argv>` in a child (under `cap`), its tree's memory sampled; the
    child's own JSON line comes back under "child". `argv` may hold "{t0}": the child's start time."""
    t0 = time.time()
    cmd = [sys.executable, "-m", "benchmarks.row_store", *[a.replace("{t0}", repr(t0)) for a in argv]]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    with open(log, "w") as err:
        proc = subprocess.Popen(cap.wrap(cmd) if cap else cmd, cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                                stderr=err, text=True)
        sampler = RssSampler(proc.pid, cap)
        out, _ = proc.communicate()
    result = {"returncode": proc.returncode, "wall_s": round(time.time() - t0, 2), "memory": sampler.stop(),
              "log": str(log), "child": _last_json(out)}
    if cap:
        result["memory"]["cgroup"] = cap.report()
        if result["memory"]["cgroup"]["oom_kills"]:
            result["status"] = "oom-killed under the memory cap"
    result.setdefault("status", "ok" if proc.returncode == 0 and result["child"] else f"failed (see {log})")
    return result


def stream_corpus(out: Path, corpus_gb: float) -> list[str]:
    """The synthetic corpus in `out`, written once: a rerun with the same size reuses it."""
    import numpy as np
    files = max(2, math.ceil(corpus_gb * 1000 / STREAM_SHARD_MB))
    marker = out / "corpus.json"
    if marker.exists():
        known = json.loads(marker.read_text())
        if known["corpus_gb"] == corpus_gb and all(Path(f).exists() for f in known["files"]):
            return known["files"]
    out.mkdir(parents=True, exist_ok=True)
    # `write_corpus` draws every document (~13 MB/s here): for gigabytes, lines are drawn from a pool of
    # documents made the same way (tokenizing repeated text costs the same per token).
    pool_dir = out / "pool"
    pool_dir.mkdir(exist_ok=True)
    pool = Path(write_corpus(pool_dir, 1, 64)[0]).read_text().splitlines(keepends=True)
    shutil.rmtree(pool_dir)
    rng, per_file, paths = np.random.default_rng(1), int(corpus_gb * 1e9 / files), []
    for i in range(files):
        path, written = out / f"shard-{i:03d}.jsonl", 0
        with open(path, "w") as f:
            while written < per_file:
                lines = [pool[j] for j in rng.integers(0, len(pool), 256)]
                f.writelines(lines)
                written += sum(map(len, lines))
        paths.append(str(path))
    marker.write_text(json.dumps({"corpus_gb": corpus_gb, "files": paths}))
    return paths


def _stream_vocab(args) -> dict:
    return {"kind": "sentencepiece", "model_path": str(Path(args.vocab_model).resolve())} if args.vocab_model \
        else {"kind": "byte"}


def _stream_files(work: Path) -> list[str]:
    return json.loads((work / "corpus" / "corpus.json").read_text())["files"]


def stream_build_child(args) -> None:
    """In the capped child: the whole Beam build of the store (DirectRunner, `--stream_workers` processes)."""
    import resource
    from patch_training.data import register_jsonl_corpus, store_build
    work = Path(args.out)
    task = register_jsonl_corpus(name=STREAM_TASK, train_files=_stream_files(work))
    shutil.rmtree(work / "store", ignore_errors=True)  # the build is what is measured: from scratch
    t0 = time.perf_counter()
    out = store_build.build_store(root=str(work / "store"), task=task, split="train", concat=True,
                                  sequence_length=args.sequence_length, vocab=_stream_vocab(args),
                                  workers=args.stream_workers, rows_per_shard=STREAM_ROWS_PER_SHARD,
                                  pipeline_args=["--direct_running_mode=multi_processing"])
    seconds = time.perf_counter() - t0
    meta = json.loads((Path(out) / "meta.json").read_text())
    print(json.dumps({"seconds": round(seconds, 2), "corpus_tokens": meta["corpus_tokens"],
                      "tokens_per_s": meta["corpus_tokens"] / seconds, "rows": meta["num_rows"],
                      "shards": len(meta["shards"]), "store_bytes": _dir_bytes(Path(out)),
                      "token_stream_bytes": _dir_bytes(work / "store" / ".tokens"),
                      "driver_max_rss_bytes": 1024 * resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), flush=True)


def stream_train_child(args) -> None:
    """In the capped child: open the store and train; when the first step completed, from process start."""
    import dataclasses
    import jax
    from benchmarks.train_throughput import DEFAULT_NUMERICS, load_model_config
    from patch_training.checkpointing import CheckpointConfig
    from patch_training.data import make_dataset, register_jsonl_corpus
    from patch_training.trainer import Trainer, TrainerConfig
    t_imported = time.time()
    work = Path(args.out)
    task = register_jsonl_corpus(name=STREAM_TASK, train_files=_stream_files(work))
    ds = make_dataset(task=task, split="train", sequence_length=args.sequence_length, concat=True,
                      vocab=_stream_vocab(args), row_stores={task: str(work / "store")})
    t_opened = time.time()
    cfg = load_model_config(args.model_gin, DEFAULT_NUMERICS)
    cfg = dataclasses.replace(cfg, vocab_size=int(ds.meta["vocab_size"]))
    shutil.rmtree(work / "train_run", ignore_errors=True)
    trainer = Trainer(work / "train_run", cfg,
                      TrainerConfig(num_steps=args.train_steps, batch_size=args.batch,
                                    sequence_length=args.sequence_length, log_every=1, plot=False),
                      ds, console=False, checkpoint_config=CheckpointConfig(save_every_steps=None,
                                                                            save_every_seconds=None))
    done: list[float] = []

    def first_step(info) -> None:
        if not done:
            jax.block_until_ready(info.state.params)
            done.append(time.time())
    trainer.add_hook(first_step, every=1, at_end=False)
    result = trainer.run()
    t0 = float(args.t0)
    reader = ds._reader
    print(json.dumps({"steps": result.final_step, "loss_last": result.last_metrics.get("loss"),
                      "seconds_to_imports": round(t_imported - t0, 2),
                      "seconds_to_store_open": round(t_opened - t0, 2),
                      "seconds_to_first_step": round(done[0] - t0, 2), "seconds_total": round(time.time() - t0, 2),
                      "rows_read": reader.rows_read, "bytes_read": reader.bytes_read,
                      "store_rows": ds.num_rows, "model_gin": args.model_gin, "vocab_size": cfg.vocab_size}),
          flush=True)


def old_design(args, work: Path, files: list[str], corpus_tokens: int | None) -> dict:
    """The memmap cache (today's embedded default) built from a slice of the corpus: the whole-corpus
    tokenize + pack pass every host runs before step 1, timed on the slice and scaled to the corpus."""
    from patch_training.data import make_dataset, register_jsonl_corpus
    slice_dir = work / "old_design"
    shutil.rmtree(slice_dir, ignore_errors=True)
    slice_dir.mkdir(parents=True)
    piece, budget = slice_dir / "slice.jsonl", int(args.slice_mb * 1e6)
    with open(files[0]) as src, open(piece, "w") as dst:
        for line in src:
            if budget <= 0:
                break
            dst.write(line)
            budget -= len(line)
    task = register_jsonl_corpus(name="stream_slice", train_files=[str(piece)])
    t0 = time.perf_counter()
    ds = make_dataset(task=task, split="train", sequence_length=args.sequence_length, concat=True,
                      vocab=_stream_vocab(args), cache_dir=slice_dir / "cache")
    seconds = time.perf_counter() - t0
    slice_bytes, corpus_bytes = piece.stat().st_size, sum(Path(f).stat().st_size for f in files)
    scale, by = ((corpus_tokens / ds.num_tokens, "tokens") if corpus_tokens else
                 (corpus_bytes / slice_bytes, "bytes"))
    disk = _dir_bytes(slice_dir / "cache")
    return {"slice_bytes": slice_bytes, "slice_tokens": ds.num_tokens, "slice_seconds": round(seconds, 2),
            "slice_disk_bytes": disk, "scaled_by": by, "scale": scale,
            "extrapolated_seconds_before_step_1": seconds * scale, "extrapolated_disk_bytes": disk * scale,
            "note": "extrapolated linearly from the slice: tfds prepare + tokenize + pack into the memmap "
                    "cache, one process, on every host"}


def stream(args) -> dict:
    from patch_training.errors import UserError
    if args.corpus_gb <= 0 or (args.mem_cap_gb or 0) < 0:
        raise UserError(f"--corpus_gb must be positive and --mem_cap_gb not negative, got {args.corpus_gb}, "
                        f"{args.mem_cap_gb}")
    cap_bytes = int(args.mem_cap_gb * 1e9) if args.mem_cap_gb else None
    caps: dict[str, MemoryCap] = {}
    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="row_store_stream."))
    t0 = time.time()

    def say(text: str) -> None:
        print(f"[row_store --stream {time.time() - t0:7.1f}s] {text}", file=sys.stderr, flush=True)
    try:
        for name in ("build", "train") if cap_bytes else ():  # first: a machine that cannot cap says so at once
            caps[name] = MemoryCap(cap_bytes, name)
        say(f"corpus: {args.corpus_gb} GB in {work / 'corpus'} (reused when there)")
        files = stream_corpus(work / "corpus", args.corpus_gb)
        corpus_bytes = sum(Path(f).stat().st_size for f in files)
        common = ["--out", str(work), "--sequence_length", str(args.sequence_length)] + (
            ["--vocab_model", args.vocab_model] if args.vocab_model else [])
        say(f"building the store, {args.stream_workers} Beam processes, cap {args.mem_cap_gb} GB "
            f"(log: {work / 'build.log'})")
        build = run_capped(["--stream_child", "build", "--stream_workers", str(args.stream_workers), *common],
                           caps.get("build"), work / "build.log")
        train = None
        if build["status"] == "ok":
            say(f"training {args.train_steps} steps from the store (log: {work / 'train.log'})")
            train = run_capped(["--stream_child", "train", "--t0", "{t0}", "--model_gin", args.model_gin,
                                "--batch", str(args.batch), "--train_steps", str(args.train_steps), *common],
                               caps.get("train"), work / "train.log")
        tokens = build["child"]["corpus_tokens"] if build["child"] else None
        say(f"the old design: the memmap cache of a {args.slice_mb} MB slice")
        old = old_design(args, work, files, tokens) if args.slice_mb else None
    finally:
        for cap in caps.values():
            cap.close()
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)
    return {"benchmark": "row_store_stream", "corpus_gb": args.corpus_gb, "corpus_bytes": corpus_bytes,
            "corpus_files": len(files), "vocab": _stream_vocab(args)["kind"], "sequence_length": args.sequence_length,
            "mem_cap_bytes": cap_bytes, "corpus_to_cap": corpus_bytes / cap_bytes if cap_bytes else None,
            "memory_measure": f"peaks sampled every {RSS_SAMPLE_S} s over each child's process tree: RssAnon "
                              "(what the cap cannot reclaim) and VmRSS (shared pages once per process); "
                              "cgroup total_rss = the kernel's anonymous memory of the cgroup (sampled); "
                              "max_usage_bytes_incl_page_cache = the kernel's high-water mark, page cache included",
            "build": build, "train": train, "old_design": old, "wall_s": round(time.time() - t0, 1)}


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
    stream_flags = parser.add_argument_group("--stream (a corpus larger than a memory cap, end to end)")
    stream_flags.add_argument("--stream", action="store_true")
    stream_flags.add_argument("--corpus_gb", type=float, default=3.0)
    stream_flags.add_argument("--mem_cap_gb", type=float, default=None,
                              help="cgroup v1 memory limit of the build and of the training process")
    stream_flags.add_argument("--stream_workers", type=int, default=2, help="Beam DirectRunner processes")
    stream_flags.add_argument("--train_steps", type=int, default=5)
    stream_flags.add_argument("--slice_mb", type=float, default=16.0,
                              help="corpus slice the old design's cache is built from (0: skip)")
    parser.add_argument("--stream_child", choices=("build", "train"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--t0", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--store", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(None if argv is None else [str(a) for a in argv])
    if args.worker is not None:
        host_worker(args)
        return {}
    if args.stream_child:
        (stream_build_child if args.stream_child == "build" else stream_train_child)(args)
        return {}
    if args.stream:
        result = stream(args)
        print(json.dumps(result))
        return result

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
    from patch_training.errors import run_cli
    run_cli(main, prog="benchmarks.row_store")
