import os
import sys
from pathlib import Path

# Keep the shared 2-core machine usable: one intra-op thread for in-process JAX work.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
# fake_runs.py lives beside the tests (no __init__.py in test folders).
sys.path.insert(0, str(Path(__file__).parent))
