"""Triton kernels, installed as ``nfinpaint.kernels`` (the folder is top-level ``kernels/``).

- :mod:`nfinpaint.kernels.gram`: ``gram_distance`` (Gram/style distance, tiled,
  never writes the Gram matrices) and its bmm reference ``gram_distance_reference``;
- :mod:`nfinpaint.kernels.feature_distance`: ``feature_distance`` (equation 2,
  the semantics of ``nfinpaint.ops.feature_distance_reference``);
- :mod:`nfinpaint.kernels.launch`: call-time choice between compiled Triton (CUDA
  tensors, autotuned), the CPU interpreter (``TRITON_INTERPRET=1``) and a clear error.

Each op is a ``torch.library.custom_op`` (namespace ``nfinpaint_triton``) with a fake
kernel and an autograd formula whose backward is another custom op, so
``torch.compile(fullgraph=True)`` sees one opaque op per call.  Submodules are not
imported here so that ``import nfinpaint.kernels`` stays cheap.
"""
