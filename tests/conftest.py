"""Suite-wide test set-up: keep triton out of the test process; let Python cache bytecode.

TensorFlow (pulled in by seqio in other tests of the same pytest run) and triton each bundle LLVM;
loading triton after TensorFlow aborts the process ("Option ... registered more than once").
torch only imports triton lazily (torch._dynamo, reached by transformers' generate) and treats an
ImportError as "no triton", which is all these CPU tests need.
"""
import os
import sys

if "triton" not in sys.modules:
    sys.modules["triton"] = None  # makes `import triton` raise ImportError

# Where PYTHONDONTWRITEBYTECODE is set (as on this kind of machine) and the venv was synced without
# compiled bytecode, every import of TensorFlow/JAX/keras recompiles thousands of files from source,
# in this process and again in each of the suite's ~40 subprocesses (about a CPU-minute each on a
# loaded 2-core machine). Writing the .pyc files once makes every later import read them.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# The suite runs on CPU. With the optional libtpu extra installed, JAX would otherwise try (and loudly
# fail) to start a TPU backend in every process; the AOT tests ask libtpu for compile-only devices
# explicitly and need no TPU backend.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
