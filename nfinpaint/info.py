"""``python -m nfinpaint.info``: what this installation can run.

Prints the torch/CUDA/Triton versions, whether the compiled operators are
built and for which backends and CUDA archs, whether a GPU is visible, and
which mode the Triton kernels would run in.
"""
from __future__ import annotations

import os
import platform

import torch

import nfinpaint
from nfinpaint import _extension, cli


def triton_mode() -> str:
    try:
        import triton
    except ImportError:
        return "unavailable (triton is not installed)"
    from nfinpaint.kernels.launch import interpreter_enabled  # noqa: PLC0415  (as the kernels read it)

    if interpreter_enabled():
        return (f"interpreter on the CPU (TRITON_INTERPRET={os.environ['TRITON_INTERPRET']}), "
                f"triton {triton.__version__}")
    if torch.cuda.is_available():
        return f"GPU, triton {triton.__version__}"
    return (f"none: no GPU visible; set TRITON_INTERPRET=1 to run the kernels in the CPU "
            f"interpreter (triton {triton.__version__})")


def report() -> list[tuple[str, str]]:
    rows = [
        ("nfinpaint", nfinpaint.__version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("torch built with CUDA", torch.version.cuda or "no (CPU-only build)"),
    ]
    if _extension.is_built():
        info = _extension.build_info()
        rows.append(("nfinpaint._C", f"built, backends: {info['backends'].replace(',', ', ')}"))
        if "cuda_archs" in info:
            rows.append(("CUDA kernels compiled for", info["cuda_archs"] or "torch's default archs"))
    else:
        rows.append(("nfinpaint._C", f"NOT built ({_extension._load()}). {_extension._HINT}"))
    if torch.cuda.is_available():
        gpus = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        rows.append(("GPU visible", gpus))
        cannot = [f"cuda:{i}: {why}" for i in range(torch.cuda.device_count())
                  if (why := _extension.cuda_kernels_missing(torch.device("cuda", i)))]
        rows.append(("operators run on the GPU", "; ".join(cannot) if cannot else "yes"))
    else:
        rows.append(("GPU visible", "no"))
    rows.append(("Triton kernels run on", triton_mode()))
    return rows


def main(argv: list[str] | None = None) -> int:
    cli.parser("python -m nfinpaint.info", __doc__).parse_args(argv)     # the docstring as plain text
    rows = report()
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
