"""Benchmarks are a pytest suite of their own: ``pytest benchmarks -s``.

Each benchmark prints a table of medians and ratios measured in the same run;
none asserts a time.  GPU benchmarks skip without a GPU.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))  # `import timing` from the benchmark files

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
