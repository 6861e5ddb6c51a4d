import os

# Keep the shared 2-core machine usable: one intra-op thread for in-process JAX tests.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
