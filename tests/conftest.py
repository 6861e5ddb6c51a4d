"""Suite-wide test set-up: keep triton out of the test process.

TensorFlow (pulled in by seqio in other tests of the same pytest run) and triton each bundle LLVM;
loading triton after TensorFlow aborts the process ("Option ... registered more than once").
torch only imports triton lazily (torch._dynamo, reached by transformers' generate) and treats an
ImportError as "no triton", which is all these CPU tests need.
"""
import sys

if "triton" not in sys.modules:
    sys.modules["triton"] = None  # makes `import triton` raise ImportError
