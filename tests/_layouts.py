"""The same values in other memory layouts, for the tests' layout sweeps.

``relayout(x, kind)`` returns a tensor equal to ``x`` (shape and values) stored as:

- "channels_last": NHWC (4-D only); H and W still merge into one stride;
- "transposed": the two ``dims`` swapped in memory (default the last two: W
  outermost for a feature map, column-major for a plane); dense, but H and W
  do not merge, so ``reshape`` copies and ``empty_like`` keeps the layout;
- "sliced": a window of a larger buffer, with a storage offset and padded rows:
  neither dense nor mergeable.

The result is a fresh leaf (call ``requires_grad_()`` on it as needed).
"""
import torch

LAYOUTS = ("channels_last", "transposed", "sliced")


def relayout(x: torch.Tensor, kind: str, dims: tuple[int, int] = (-2, -1)) -> torch.Tensor:
    x = x.detach()
    if kind == "channels_last":
        out = x.contiguous(memory_format=torch.channels_last)
        assert not out.is_contiguous() or x.shape[1] == 1 or x.shape[2] * x.shape[3] == 1
    elif kind == "transposed":
        out = x.transpose(*dims).contiguous().transpose(*dims)
        assert not out.is_contiguous() or x.shape[dims[0]] == 1 or x.shape[dims[1]] == 1
    elif kind == "sliced":
        # One spare element before the data and two after each row.
        big = torch.zeros(*x.shape[:-1], x.shape[-1] + 3, dtype=x.dtype, device=x.device)
        out = big[..., 1:1 + x.shape[-1]]
        out.copy_(x)
        assert out.storage_offset() > 0
    else:
        raise ValueError(f"unknown layout {kind!r}")
    assert torch.equal(out, x)
    return out
