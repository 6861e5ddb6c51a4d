"""Model FLOPs utilisation, MaxText convention.

Training FLOPs per step = 3 × forward matmul FLOPs (QKV, output projection, MLP, unembedding;
no embedding lookup) + attention 4·B·S²·H·D halved for the causal mask. The metric is named
`mfu_causal_halved` to say so. In a patch stage S is the number of patches (the length inside
the network), and B·S positions flow through it per step.

Device peak: a table of bf16 dense peaks for TPU/GPU; on CPU a matmul peak measured at start-up
in the compute dtype (there is no honest datasheet number for a shared CPU).
"""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp

MFU_METRIC = "mfu_causal_halved"

# bf16 dense TFLOP/s per chip (REFERENCE §5). Matched against `device_kind`, most specific first.
PEAK_TFLOPS_BF16: tuple[tuple[str, float], ...] = (
    ("v6 lite", 918.0), ("v6e", 918.0),
    ("v5 lite", 197.0), ("v5e", 197.0),
    ("v5p", 459.0), ("tpu v5", 459.0),
    ("tpu v4", 275.0),
    ("h100", 989.0), ("h200", 989.0),  # H200 shares H100's tensor cores
)


def training_flops_per_step(model_config, network_length: int, batch_size: int) -> float:
    """Analytic training FLOPs for one optimizer step over `batch_size` rows of `network_length`
    positions (positions inside the network: tokens per row / K)."""
    from patch_training.model import forward_flops_per_token
    return 3.0 * forward_flops_per_token(model_config, network_length, causal_halved=True) * network_length * batch_size


def table_peak_tflops(device_kind: str) -> float | None:
    kind = device_kind.lower()
    for key, peak in PEAK_TFLOPS_BF16:
        if key in kind:
            return peak
    return None


# Each peak program (and its inputs) is made once and kept for the life of the process. Measuring again (the
# benchmarks measure before and after their timed run) reuses it: freeing a matmul compiled with the oneDNN
# options has aborted the process inside XLA (an ObjectPool check, "available_.size() == num_created_"), twice
# on 2026-12-07, once in a CI run of train_throughput's smoke test.
_PEAK_PROGRAMS: dict = {}


def measure_matmul_peak_tflops(dtype: str = "float32", n: int = 1024, repeats: int = 8,
                               device: jax.Device | None = None,
                               compiler_options: dict | None = None) -> float:
    """Best observed TFLOP/s of an n×n matmul in `dtype` on one device (the CPU peak reference).

    Pass the train step's per-jit `compiler_options` so the peak is that of the kernel path the step
    uses: on CPU a bf16 dot runs through oneDNN with the train step's oneDNN options
    (`train_step.ONEDNN_CPU_OPTIONS`) and through XLA's own kernels without them, at very different speeds.
    """
    device = device or jax.devices()[0]
    key = (str(jnp.dtype(dtype)), n, device, repr(sorted((compiler_options or {}).items())))
    if key not in _PEAK_PROGRAMS:
        key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
        a = jax.device_put(jax.random.normal(key_a, (n, n), jnp.float32).astype(dtype), device)
        b = jax.device_put(jax.random.normal(key_b, (n, n), jnp.float32).astype(dtype), device)
        _PEAK_PROGRAMS[key] = (jax.jit(lambda x, y: x @ y, compiler_options=compiler_options), a, b)
    matmul, a, b = _PEAK_PROGRAMS[key]
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e12


@functools.lru_cache(maxsize=None)
def device_peak_tflops(dtype: str = "float32") -> tuple[float, str]:
    """(peak TFLOP/s per device, where it came from). Table for TPU/GPU, measurement on CPU."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        peak = table_peak_tflops(dev.device_kind)
        if peak is not None:
            return peak, f"table:{dev.device_kind}"
    return measure_matmul_peak_tflops(dtype), f"measured:{dev.platform}:{dtype}_matmul"


def kernel_path_name(dtype: str, compiler_options: dict | None, platform: str = "cpu") -> str:
    """A short name for the matmul path a jit with these options takes (labels the measured peak)."""
    options = compiler_options or {}
    routes = [name for name, on in (("onednn_custom_call", options.get("xla_cpu_experimental_onednn_custom_call")),
                                    ("onednn_fusion", options.get("xla_cpu_use_onednn")
                                     and options.get("xla_cpu_experimental_onednn_fusion_type")))
              if on and platform == "cpu"]
    return f"{'+'.join(routes) or f'xla_{platform}_default'}:{dtype}_matmul"


def mfu(flops_per_step: float, step_time_s: float, peak_tflops_per_device: float,
        num_devices: int) -> float:
    if step_time_s <= 0:
        return 0.0
    return flops_per_step / step_time_s / (peak_tflops_per_device * 1e12 * num_devices)
