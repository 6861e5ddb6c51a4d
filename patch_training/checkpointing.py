"""Training checkpoints: an orbax `CheckpointManager` with exact-resume metadata and safe recovery.

Layout: `<run_dir>/checkpoints/<step>/` holds three orbax items saved together, asynchronously:

- `params`    `ocp.args.StandardSave` of the unboxed params pytree (what `contract.checkpoint` opens),
- `opt_state` `ocp.args.StandardSave` of the optimizer state,
- `meta`      JSON: step, RNG key data, data position, config fingerprint, wall time.

plus `patchtrain_manifest.json` (see `checkpoint_manifest`): a step counts only when complete.

What it guarantees:
- resume picks the newest *complete* step; partial steps (killed mid-write, truncated or missing
  files) are moved to `<run_dir>/checkpoints_incomplete/` (orbax tmp dirs are deleted), never loaded;
- a complete step that fails its checksum or restore raises one-line `UserError` naming directory and
  step and how to pick an older step; nothing is deleted;
- a different config fingerprint, or saved shapes that differ from the restore targets, raise one
  `UserError` naming the differing fields;
- arrays restore into the shardings of the abstract targets the caller passes (any mesh).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from typing import Any, Callable, Mapping

import gin
import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from patch_training import checkpoint_manifest as manifest_lib
from patch_training import multihost
from patch_training.checkpoint_policy import SavePolicy
from patch_training.errors import UserError
from patch_training.legacy_names import upgrade_metadata

log = logging.getLogger(__name__)

CHECKPOINTS_SUBDIR = "checkpoints"
INCOMPLETE_SUBDIR = "checkpoints_incomplete"
SUPERSEDED_SUBDIR = "checkpoints_superseded"
META_FORMAT = 1


@gin.configurable
@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Checkpoint policy knobs (gin: `CheckpointConfig.save_every_steps = 500`, ...).

    save_every_steps / save_every_seconds: save when either fires (None disables that one).
    keep: how many newest checkpoints to keep (None keeps all); keep_every_steps: also keep every
      step that is a multiple of this forever.
    restore_step: resume from this step instead of the newest complete one (newer steps are moved
      to `checkpoints_superseded/`, not deleted).
    verify_checksums: CRC32 every file when saving and before restoring (cheap for local disks;
      turn off for very large checkpoints on slow object stores: sizes are still checked).
    time_policy_sync_every_steps: multi-process only: hosts' clocks differ, so the time policy is
      consulted on process 0 and broadcast, which blocks the host; do it only every this many steps.
    """

    save_every_steps: int | None = 1000
    save_every_seconds: float | None = 3600.0
    keep: int | None = 3
    keep_every_steps: int | None = None
    async_save: bool = True
    restore_step: int | None = None
    verify_checksums: bool = True
    time_policy_sync_every_steps: int = 10


@dataclasses.dataclass
class Restored:
    """What a resume gets back. `params`/`opt_state` carry the shardings of the restore targets."""

    step: int
    params: Any
    opt_state: Any | None
    meta: dict
    rng: Any | None = None          # same kind as saved: raw uint32 key data or a typed key
    data_state: Any | None = None   # whatever the trainer passed as `data_state`


# -- RNG keys as JSON ------------------------------------------------------------------------
def key_to_json(key: Any) -> dict:
    """A JAX PRNG key (typed or raw uint32 data) as JSON-able data that restores bit-exactly."""
    if jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        impl = str(jax.random.key_impl(key))
        data = np.asarray(jax.device_get(jax.random.key_data(key)))
        return {"typed": True, "impl": impl, "dtype": str(data.dtype), "shape": list(data.shape),
                "data": data.ravel().tolist()}
    data = np.asarray(jax.device_get(key))
    return {"typed": False, "dtype": str(data.dtype), "shape": list(data.shape),
            "data": data.ravel().tolist()}


def key_from_json(spec: Mapping[str, Any]) -> Any:
    data = np.asarray(spec["data"], dtype=spec["dtype"]).reshape(spec["shape"])
    if spec.get("typed"):
        return jax.random.wrap_key_data(data, impl=spec["impl"])
    return data


# -- helpers ---------------------------------------------------------------------------------
def fingerprint_differences(saved: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> list[str]:
    """`field (saved X, now Y)` for every field that differs; JSON-normalised so tuples == lists.

    The saved side is read under today's field names (a run dir written before a rename still resumes).
    """
    if not saved or not current:
        return []
    saved = upgrade_metadata(dict(saved))
    norm = lambda v: json.loads(json.dumps(v, sort_keys=True, default=str))  # noqa: E731
    saved, current = norm(dict(saved)), norm(dict(current))
    diffs = []
    for k in sorted(set(saved) | set(current)):
        if saved.get(k, "<absent>") != current.get(k, "<absent>"):
            diffs.append(f"{k} (saved {saved.get(k, '<absent>')!r}, now {current.get(k, '<absent>')!r})")
    return diffs


def _path_str(path) -> str:
    return jax.tree_util.keystr(path, simple=True, separator="/")


def shape_differences(saved_metadata: Any, targets: Any, item: str, limit: int = 4) -> list[str]:
    """Leaves whose saved shape differs from the restore target's, or that exist on one side only."""
    def shapes(tree):
        leaves = jax.tree_util.tree_flatten_with_path(
            tree, is_leaf=lambda x: hasattr(x, "shape") and not isinstance(x, dict))[0]
        return {_path_str(p): tuple(getattr(x, "shape", ())) for p, x in leaves}

    saved, wanted = shapes(saved_metadata), shapes(targets)
    diffs = [f"{item}/{k} (saved {saved[k]}, now {wanted[k]})"
             for k in sorted(set(saved) & set(wanted)) if saved[k] != wanted[k]]
    diffs += [f"{item}/{k} (only in checkpoint)" for k in sorted(set(saved) - set(wanted))]
    diffs += [f"{item}/{k} (not in checkpoint)" for k in sorted(set(wanted) - set(saved))]
    return diffs[:limit] + ([f"... {len(diffs) - limit} more"] if len(diffs) > limit else [])


def _with_default_sharding(targets: Any) -> Any:
    """Restore targets must say where arrays go; leaves without a sharding are replicated."""
    replicated = None

    def fix(x):
        nonlocal replicated
        if getattr(x, "sharding", None) is not None:
            return x
        if replicated is None:
            mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("all",))
            replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated)

    return jax.tree.map(fix, targets)


def _handler_registry() -> ocp.handlers.CheckpointHandlerRegistry:
    """Name every item's handler so metadata (and params-only restores) work in a fresh process."""
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    for item in ("params", "opt_state"):
        registry.add(item, ocp.args.StandardSave, ocp.StandardCheckpointHandler())
        registry.add(item, ocp.args.StandardRestore, ocp.StandardCheckpointHandler())
    registry.add("meta", ocp.args.JsonSave, ocp.JsonCheckpointHandler())
    registry.add("meta", ocp.args.JsonRestore, ocp.JsonCheckpointHandler())
    return registry


def _move_aside(src: epath.Path, dest_root: epath.Path, reason: str) -> epath.Path:
    dest_root.mkdir(parents=True, exist_ok=True)
    dest = dest_root / f"{src.name}.{time.strftime('%Y%m%d-%H%M%S')}"
    n = 0
    while dest.exists():
        n += 1
        dest = dest_root / f"{src.name}.{time.strftime('%Y%m%d-%H%M%S')}.{n}"
    src.rename(dest)
    log.warning("checkpoint %s %s; moved to %s", src, reason, dest)
    return dest


# -- the manager -----------------------------------------------------------------------------
class TrainCheckpointer:
    """Save/restore training state under `<run_dir>/checkpoints/` (call on every process).

    `fingerprint`: JSON-able dict of the settings a resumed run must share with the saved one (model
    shape, vocab, seq len, seed...). `clock`: seconds, injectable for tests of the time policy.
    """

    def __init__(self, run_dir: str | os.PathLike, config: CheckpointConfig | None = None, *,
                 fingerprint: Mapping[str, Any] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        # orbax's tensorstore layer refuses relative local paths; remote URLs (gs://...) are kept.
        text = os.fspath(run_dir)
        self.run_dir = epath.Path(text if "://" in text else os.path.abspath(text))
        self.directory = self.run_dir / CHECKPOINTS_SUBDIR
        self.config = config or CheckpointConfig()
        self.fingerprint = dict(fingerprint) if fingerprint else None
        self._clock = clock
        self.policy = SavePolicy(self.config.save_every_steps, self.config.save_every_seconds)
        self.set_aside: list[epath.Path] = []
        self._pending_manifest: int | None = None

        if multihost.is_primary():
            self.directory.mkdir(parents=True, exist_ok=True)
            self._set_aside_partial_steps()
        multihost.sync_global_devices("patchtrain_ckpt_scan")

        self._manager = ocp.CheckpointManager(
            self.directory,
            options=self._orbax_options(),
            handler_registry=_handler_registry(),
        )
        self.policy.start(self.latest_step(), self._clock())

    def _orbax_options(self) -> ocp.CheckpointManagerOptions:
        from orbax.checkpoint import checkpoint_managers as cm
        keep: list = []
        if self.config.keep is not None:
            keep.append(cm.LatestN(n=self.config.keep))
        if self.config.keep_every_steps:
            keep.append(cm.EveryNSteps(interval_steps=self.config.keep_every_steps))
        if not keep:
            preservation = None  # orbax keeps everything
        else:
            preservation = keep[0] if len(keep) == 1 else cm.AnyPreservationPolicy(keep)
        return ocp.CheckpointManagerOptions(
            create=False,
            enable_async_checkpointing=self.config.async_save,
            async_options=ocp.AsyncOptions(post_finalization_callback=self._write_manifest)
            if self.config.async_save else None,
            preservation_policy=preservation,
        )

    # -- completeness -----------------------------------------------------------------------
    def _set_aside_partial_steps(self) -> None:
        """Primary only: delete orbax tmp dirs, move finalized-but-incomplete steps aside."""
        for tmp in manifest_lib.tmp_dirs(self.directory):
            log.warning("checkpoint %s was never committed (killed mid-write); removing it", tmp)
            tmp.rmtree(missing_ok=True)
        for step, path in sorted(manifest_lib.step_dirs(self.directory).items()):
            why = manifest_lib.incompleteness(path)
            if why is not None:
                self.set_aside.append(_move_aside(path, self.run_dir / INCOMPLETE_SUBDIR,
                                                  f"(step {step}) is incomplete: {why}"))

    def _write_manifest(self) -> None:
        """Orbax post-finalization hook (primary host, before the step's commit/rename)."""
        step = self._pending_manifest
        if step is None:
            return
        where = manifest_lib.writing_dir_for_step(self.directory, step)
        if where is None:
            raise RuntimeError(f"checkpoint step {step}: cannot find its directory under {self.directory}")
        manifest_lib.write_manifest(where, step, checksums=self.config.verify_checksums)

    def all_steps(self) -> list[int]:
        """Complete steps, ascending (a step still being written in the background is left out)."""
        steps = set(self._manager.all_steps())
        if self._pending_manifest is not None and self._manager.is_saving_in_progress():
            steps.discard(self._pending_manifest)
        return sorted(steps)

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    # -- saving ------------------------------------------------------------------------------
    def should_save(self, step: int) -> bool:
        """The step/time policy, agreed across processes (the time part follows process 0)."""
        if jax.process_count() == 1 or self.config.save_every_seconds is None:
            return self.policy.should_save(step, self._clock())
        if step % max(1, self.config.time_policy_sync_every_steps):
            # Step part only: "now" equal to the last save time never fires the time part.
            return self.policy.should_save(step, self.policy.last_save_time)
        decision = self.policy.should_save(step, self._clock())
        return bool(multihost.broadcast_from_primary(np.asarray(decision)))

    def save(self, step: int, params: Any, opt_state: Any = None, *, rng: Any = None,
             data_state: Any = None, extra_meta: Mapping[str, Any] | None = None,
             force: bool = False) -> bool:
        """Start saving `step` (asynchronous); True if a save was started.

        Without `force`, the policy decides; with it (final step, preemption) it always saves
        unless `step` is already on disk. Arrays are copied off device before this returns, so the
        caller may donate them to the next step right away.
        """
        if not force and not self.should_save(step):
            return False
        if step in self._manager.all_steps():
            return False
        meta = {
            "format": META_FORMAT,
            "step": int(step),
            "saved_at_unix": time.time(),
            "process_count": jax.process_count(),
            "fingerprint": self.fingerprint,
            "rng": key_to_json(rng) if rng is not None else None,
            "data_state": data_state,
            "extra": dict(extra_meta or {}),
            "has_opt_state": opt_state is not None,
        }
        items = {"params": ocp.args.StandardSave(params), "meta": ocp.args.JsonSave(meta)}
        if opt_state is not None:
            items["opt_state"] = ocp.args.StandardSave(opt_state)
        # Orbax saves one step at a time: `save` first waits for the previous one to finalize.
        self._manager.wait_until_finished()
        self._pending_manifest = int(step)
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)
        if not self.config.async_save:
            # The synchronous checkpointer has no finalization hook: the manifest follows the commit.
            if multihost.is_primary():
                manifest_lib.write_manifest(self.directory / str(step), step,
                                            checksums=self.config.verify_checksums)
            multihost.sync_global_devices("patchtrain_ckpt_saved")
        self.policy.record_save(step, self._clock())
        return True

    def wait(self) -> None:
        """Block until the last save is fully on disk (call before exiting)."""
        self._manager.wait_until_finished()
        self._manager.check_for_errors()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> "TrainCheckpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- restoring ---------------------------------------------------------------------------
    def _describe(self, step: int) -> str:
        return f"checkpoint {self.directory / str(step)} (step {step})"

    def _older_hint(self, step: int) -> str:
        older = [s for s in self.all_steps() if s < step]
        if not older:
            return "no older complete step exists; start a fresh run directory"
        return (f"to resume from an older step pass "
                f"--gin.checkpointing.CheckpointConfig.restore_step={older[-1]} "
                f"(complete steps: {older}); nothing was deleted")

    def resume_step(self) -> int | None:
        """The step a resume would load: `config.restore_step` if given, else the newest complete."""
        steps = self.all_steps()
        want = self.config.restore_step
        if want is None:
            return steps[-1] if steps else None
        if want not in steps:
            raise UserError(f"restore_step={want} is not a complete checkpoint in {self.directory} "
                            f"(complete steps: {steps or 'none'})")
        return want

    def restore_latest(self, abstract_params: Any, abstract_opt_state: Any = None) -> Restored | None:
        """Resume: restore the step chosen by `resume_step()`, or return None for a fresh run."""
        step = self.resume_step()
        if step is None:
            return None
        restored = self.restore(step, abstract_params, abstract_opt_state)
        newer = [s for s in self.all_steps() if s > step]
        if newer:
            self._supersede(newer)
        return restored

    def restore(self, step: int, abstract_params: Any, abstract_opt_state: Any = None) -> Restored:
        """Restore `step` into the given abstract targets (ShapeDtypeStructs with `.sharding`).

        Pass `abstract_opt_state=None` to load params only (e.g. to start a new stage).
        """
        step_dir = self.directory / str(step)
        if self.config.verify_checksums:
            # One reader is enough on a shared filesystem; every process learns the verdict.
            bad = manifest_lib.checksum_mismatches(step_dir) if multihost.is_primary() else []
            n_bad = int(multihost.broadcast_from_primary(np.asarray(len(bad), np.int32)))
            if n_bad:
                names = ", ".join(bad[:3]) if bad else f"{n_bad} files"
                raise UserError(f"{self._describe(step)} is corrupt: checksum mismatch in "
                                f"{names}; {self._older_hint(step)}")
        try:
            meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:  # noqa: BLE001 - any failure here means an unreadable checkpoint
            raise UserError(f"{self._describe(step)} is corrupt: cannot read meta "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                            f"{self._older_hint(step)}") from None
        diffs = fingerprint_differences(meta.get("fingerprint"), self.fingerprint)
        if diffs:
            raise UserError(f"cannot resume {self._describe(step)} with this config: it differs in "
                            f"{'; '.join(diffs)}. Use the saved config or a new run directory")
        self._check_shapes(step, abstract_params, abstract_opt_state, meta)

        items = {"params": ocp.args.StandardRestore(_with_default_sharding(abstract_params))}
        if abstract_opt_state is not None:
            items["opt_state"] = ocp.args.StandardRestore(_with_default_sharding(abstract_opt_state))
        try:
            out = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # noqa: BLE001
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise UserError(f"{self._describe(step)} is corrupt or unreadable ({type(e).__name__}: "
                            f"{first[:200]}); {self._older_hint(step)}") from None
        rng = key_from_json(meta["rng"]) if meta.get("rng") else None
        self.policy.start(step, self._clock())
        return Restored(step=int(step), params=out["params"],
                        opt_state=out["opt_state"] if abstract_opt_state is not None else None,
                        meta=meta, rng=rng, data_state=meta.get("data_state"))

    def _check_shapes(self, step: int, abstract_params: Any, abstract_opt_state: Any, meta: dict) -> None:
        try:
            metadata = self._manager.item_metadata(step)
        except Exception as e:  # noqa: BLE001
            raise UserError(f"{self._describe(step)} is corrupt: unreadable array metadata "
                            f"({type(e).__name__}); {self._older_hint(step)}") from None
        diffs = []
        for item, target in (("params", abstract_params), ("opt_state", abstract_opt_state)):
            if target is None:
                continue
            if item == "opt_state" and not meta.get("has_opt_state", True):
                raise UserError(f"{self._describe(step)} holds no optimizer state; "
                                "restore params only (abstract_opt_state=None)")
            saved = metadata[item]
            saved_tree = getattr(saved, "tree", saved)
            diffs += shape_differences(saved_tree, target, item)
        if diffs:
            raise UserError(f"cannot resume {self._describe(step)}: saved arrays differ from this "
                            f"config's: {'; '.join(diffs)}")

    def _supersede(self, newer: list[int]) -> None:
        """After restoring an older step on purpose, move newer ones out of the way (kept on disk)."""
        self._manager.wait_until_finished()
        if multihost.is_primary():
            for s in newer:
                self.set_aside.append(_move_aside(self.directory / str(s), self.run_dir / SUPERSEDED_SUBDIR,
                                                  f"(step {s}) is newer than restore_step"))
        multihost.sync_global_devices("patchtrain_ckpt_supersede")
        self._manager.reload()
