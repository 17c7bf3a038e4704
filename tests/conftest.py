"""Test set-up shared by every test module.

- Triton kernels run in the CPU interpreter unless a GPU is visible:
  TRITON_INTERPRET must be set before any kernel module is imported, so it is
  set here, at collection time.
- Tests marked ``@pytest.mark.gpu`` skip with a reason when no GPU is visible.
"""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
