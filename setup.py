"""Build script for nfinpaint's C++/CUDA operators (``nfinpaint._C``).

The CUDA sources are built whenever a CUDA toolkit is found, whether or not a
GPU is visible: a build machine often has the toolkit and no GPU.  The choice,
the toolkit root and the arch list are printed so a build log says what it did.

Environment switches:
  NFINPAINT_FORCE_CPU=1   build the C++ operators only, even if a toolkit is found
  NFINPAINT_FORCE_CUDA=1  fail unless the CUDA operators can be built
  CUDA_HOME               toolkit root (the folder holding bin/nvcc and lib64/libcudart.so)
  TORCH_CUDA_ARCH_LIST    e.g. "8.0;9.0;10.0+PTX"; default: the visible GPU's arch, or DEFAULT_ARCHS
  MAX_JOBS                parallel compile jobs (ninja)
  NFINPAINT_DEBUG=1       -O0 -g builds
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
# A short default keeps a GPU-less build to a few minutes: Ampere and Hopper
# natively, PTX so that newer GPUs JIT-compile the sm_90 code.
DEFAULT_ARCHS = "8.0;9.0+PTX"


def log(msg: str) -> None:
    print(f"[nfinpaint build] {msg}", flush=True)


def fail(msg: str) -> None:
    sys.stderr.write(f"\n[nfinpaint build] error: {msg}\n\n")
    raise SystemExit(1)


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def is_toolkit_root(path: str | None) -> bool:
    return bool(path) and os.path.isfile(os.path.join(path, "bin", "nvcc")) and any(
        os.path.exists(os.path.join(path, lib, "libcudart.so")) for lib in ("lib64", "lib")
    )


def find_cuda_root() -> tuple[str | None, str]:
    """Return (toolkit root or None, how it was found)."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        path = os.environ.get(var)
        if path:
            if is_toolkit_root(path):
                return os.path.realpath(path), f"${var}"
            log(f"${var}={path} is not a CUDA toolkit root (no bin/nvcc + lib64/libcudart.so); ignoring it")
    nvcc = shutil.which("nvcc")
    if nvcc:
        # The nvcc on PATH may be a wrapper script outside the toolkit; nvcc's
        # own dry run reports the real toolkit location as TOP=...
        try:
            with tempfile.TemporaryDirectory() as tmp:
                open(os.path.join(tmp, "probe.cu"), "w").close()
                out = subprocess.run([nvcc, "--dryrun", "-v", "-c", "probe.cu"], capture_output=True,
                                     text=True, timeout=60, cwd=tmp).stderr
            top = re.search(r"^#\$ TOP=(.+)$", out, re.M)
            if top:
                root = os.path.realpath(top.group(1).strip())
                if is_toolkit_root(root):
                    return root, f"reported by {nvcc} (nvcc --dryrun TOP=)"
        except (OSError, subprocess.SubprocessError):
            pass
        root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if is_toolkit_root(root):
            return root, f"parent of {os.path.realpath(nvcc)}"
    for root in ["/usr/local/cuda", *sorted(glob.glob("/usr/local/cuda-*"), reverse=True)]:
        if is_toolkit_root(root):
            return os.path.realpath(root), "standard install folder"
    return None, "not found"


def toolkit_version(root: str) -> str:
    out = subprocess.run([os.path.join(root, "bin", "nvcc"), "--version"], capture_output=True, text=True).stdout
    match = re.search(r"release (\d+\.\d+)", out)
    if not match:
        fail(f"could not read the CUDA version from {root}/bin/nvcc --version")
    return match.group(1)


def configure_cuda() -> bool:
    """Decide CPU-only or CUDA; set CUDA_HOME before torch's cpp_extension reads it."""
    if env_flag("NFINPAINT_FORCE_CPU"):
        log("NFINPAINT_FORCE_CPU is set: building the C++ (CPU) operators only")
        return False
    root, how = find_cuda_root()
    if root is None:
        if env_flag("NFINPAINT_FORCE_CUDA"):
            fail("NFINPAINT_FORCE_CUDA is set but no CUDA toolkit was found. "
                 "Set CUDA_HOME to the toolkit root (the folder with bin/nvcc and lib64/libcudart.so).")
        log("no CUDA toolkit found: building the C++ (CPU) operators only")
        return False
    import torch  # noqa: PLC0415  (the build environment has torch; imported here for its CUDA version)

    if torch.version.cuda is None:
        if env_flag("NFINPAINT_FORCE_CUDA"):
            fail(f"NFINPAINT_FORCE_CUDA is set but torch {torch.__version__} is a CPU-only build.")
        log(f"torch {torch.__version__} is a CPU-only build: building the C++ (CPU) operators only")
        return False
    version = toolkit_version(root)
    if version.split(".")[0] != torch.version.cuda.split(".")[0]:
        fail(f"the CUDA toolkit at {root} is version {version}, but torch {torch.__version__} was built "
             f"with CUDA {torch.version.cuda}; their major versions must match. Point CUDA_HOME at a "
             f"CUDA {torch.version.cuda.split('.')[0]}.x toolkit, or build CPU-only with NFINPAINT_FORCE_CPU=1.")
    os.environ["CUDA_HOME"] = root
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST") or "the visible GPU's arch (torch default)"
    log(f"CUDA toolkit {version} at {root} ({how}); building CPU + CUDA operators for {archs}")
    return True


def extensions():
    with_cuda = configure_cuda()
    # Imported after configure_cuda(): cpp_extension reads CUDA_HOME at import time.
    from torch.utils.cpp_extension import CppExtension, CUDAExtension  # noqa: PLC0415

    debug = env_flag("NFINPAINT_DEBUG")
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    opt = ["-O0", "-g"] if debug else ["-O3"]
    cxx = [*opt, "-std=c++20", "-fopenmp"]
    macros = [("NFINPAINT_ARCHS", f'"{os.environ.get("TORCH_CUDA_ARCH_LIST", "")}"')] if with_cuda else []
    kwargs = dict(include_dirs=[os.path.join(ROOT, "csrc", "include")], extra_link_args=["-fopenmp"])
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        macros.append(("NFINPAINT_WITH_CUDA", None))
        nvcc = [*opt, "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo"]
        ext = CUDAExtension("nfinpaint._C", sources, define_macros=macros,
                            extra_compile_args={"cxx": cxx, "nvcc": nvcc}, **kwargs)
    else:
        ext = CppExtension("nfinpaint._C", sources, define_macros=macros,
                           extra_compile_args={"cxx": cxx}, **kwargs)
    log(f"sources: {' '.join(sources)}")
    log(f"cxx flags: {' '.join(cxx)}" + (f"; nvcc flags: {' '.join(nvcc)}" if with_cuda else ""))
    log(f"MAX_JOBS={os.environ.get('MAX_JOBS', '(ninja default)')}")
    return [ext]


def build_ext_class():
    from torch.utils.cpp_extension import BuildExtension  # noqa: PLC0415

    return BuildExtension.with_options(no_python_abi_suffix=False)


if __name__ == "__main__":
    setup(
        packages=["nfinpaint", "nfinpaint.kernels"],
        # Triton kernels live in top-level kernels/ and install inside the
        # package, so no top-level `kernels` module lands in site-packages.
        package_dir={"nfinpaint": "nfinpaint", "nfinpaint.kernels": "kernels"},
        package_data={"nfinpaint": ["weights/*.pt"]},   # the shipped default generator
        ext_modules=extensions(),
        cmdclass={"build_ext": build_ext_class()},
    )
