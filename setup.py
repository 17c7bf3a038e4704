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
import importlib.util
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
    return bool(path) and os.path.isfile(os.path.join(path, "bin", "nvcc"))


def nvcc_reported_root() -> str | None:
    """The toolkit root that `nvcc` on PATH reports for itself (`nvcc --dryrun`: TOP=...)."""
    nvcc = shutil.which("nvcc")
    if not nvcc:
        return None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            open(os.path.join(tmp, "probe.cu"), "w").close()
            out = subprocess.run([nvcc, "--dryrun", "-v", "-c", "probe.cu"], capture_output=True,
                                 text=True, timeout=60, cwd=tmp).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    top = re.search(r"^#\$ TOP=(.+)$", out, re.M)
    root = os.path.realpath(top.group(1).strip()) if top else None
    return root if is_toolkit_root(root) else None


def find_cuda_root() -> tuple[str | None, str]:
    """Return (toolkit root or None, how it was found).

    torch.utils.cpp_extension takes $CUDA_HOME / $CUDA_PATH, else the grandparent
    of the `nvcc` on PATH.  On these build machines that `nvcc` is a wrapper
    script outside the toolkit, so torch's guess has no lib64/libcudart.so and
    the link fails: ask nvcc itself first.  A variable that names no toolkit is
    reported and ignored (torch would fail on it later, less clearly).
    """
    for var in ("CUDA_HOME", "CUDA_PATH"):
        path = os.environ.get(var)
        if path:
            if is_toolkit_root(path):
                return os.path.realpath(path), f"${var}"
            log(f"${var}={path} is not a CUDA toolkit root (no bin/nvcc); ignoring it")
    root = nvcc_reported_root()
    if root:
        return root, "reported by nvcc on PATH (nvcc --dryrun TOP=)"
    from torch.utils.cpp_extension import _find_cuda_home  # noqa: PLC0415  (torch's own search)

    root = _find_cuda_home()
    return (root, "torch.utils.cpp_extension") if is_toolkit_root(root) else (None, "not found")


def configure_cuda() -> bool:
    """Decide CPU-only or CUDA; set CUDA_HOME before torch's cpp_extension reads it.

    The toolkit's major version must match torch's CUDA: torch's BuildExtension
    checks that when it compiles (``_check_cuda_version``), so it is not repeated here."""
    if env_flag("NFINPAINT_FORCE_CPU"):
        log("NFINPAINT_FORCE_CPU is set: building the C++ (CPU) operators only")
        return False
    import torch  # noqa: PLC0415  (the build environment has torch)

    if torch.version.cuda is None:
        if env_flag("NFINPAINT_FORCE_CUDA"):
            fail(f"NFINPAINT_FORCE_CUDA is set but torch {torch.__version__} is a CPU-only build.")
        log(f"torch {torch.__version__} is a CPU-only build: building the C++ (CPU) operators only")
        return False
    root, how = find_cuda_root()
    if root is None:
        if env_flag("NFINPAINT_FORCE_CUDA"):
            fail("NFINPAINT_FORCE_CUDA is set but no CUDA toolkit was found. "
                 "Set CUDA_HOME to the toolkit root (the folder with bin/nvcc and lib64/libcudart.so).")
        log("no CUDA toolkit found: building the C++ (CPU) operators only")
        return False
    os.environ["CUDA_HOME"] = root
    # torch's default without a visible GPU is every arch nvcc knows: minutes more per file.
    if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = DEFAULT_ARCHS
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST") or "the visible GPU's arch (torch default)"
    log(f"CUDA toolkit at {root} ({how}); building CPU + CUDA operators for {archs}")
    return True


def sources_digest() -> str:
    """nfinpaint/sources_digest.py's digest of csrc/, the file loaded by its path (importing the package
    here would run its __init__ before it is built)."""
    spec = importlib.util.spec_from_file_location("nfinpaint_sources_digest",
                                                  os.path.join(ROOT, "nfinpaint", "sources_digest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.digest(os.path.join(ROOT, "csrc"))


def extensions():
    with_cuda = configure_cuda()
    # Imported after configure_cuda(): cpp_extension reads CUDA_HOME at import time.
    from torch.utils.cpp_extension import CppExtension, CUDAExtension  # noqa: PLC0415

    debug = env_flag("NFINPAINT_DEBUG")
    sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    opt = ["-O0", "-g"] if debug else ["-O3"]
    # -ffp-contract=off: GCC contracts a*b + c into an FMA by default (also in the AVX2
    # copies of the CPU loops), which rounds once where CUDA (--fmad=false) rounds twice.
    cxx = [*opt, "-std=c++20", "-fopenmp", "-ffp-contract=off"]
    macros = [("NFINPAINT_ARCHS", f'"{os.environ.get("TORCH_CUDA_ARCH_LIST", "")}"')] if with_cuda else []
    macros.append(("NFINPAINT_SOURCES", f'"{sources_digest()}"'))     # a stale build says so (nfinpaint._extension)
    kwargs = dict(include_dirs=[os.path.join(ROOT, "csrc", "include")], extra_link_args=["-fopenmp"])
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        macros.append(("NFINPAINT_WITH_CUDA", None))
        # --fmad=false: no FMA contraction, so the per-element math of the shared headers
        # rounds as on the CPU (built with -ffp-contract=off).
        nvcc = [*opt, "-std=c++20", "--expt-relaxed-constexpr", "-lineinfo", "--fmad=false"]
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
        # the shipped default generator; the page `python -m nfinpaint.serve` serves
        package_data={"nfinpaint": ["weights/*.pt", "web/*.html", "web/*.js", "web/*.css"]},
        ext_modules=extensions(),
        cmdclass={"build_ext": build_ext_class()},
    )
