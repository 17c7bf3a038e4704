"""One check for the fake kernels: they refuse what the kernels refuse, in the kernel's words."""
import pytest


def assert_meta_refuses_as_cpu(call) -> None:
    """``call(device)`` raises RuntimeError on "cpu" (the kernel) and on "meta" (the fake kernel, what
    tracing and torch.compile run), with the same first line."""
    with pytest.raises(RuntimeError) as cpu:
        call("cpu")
    with pytest.raises(RuntimeError) as meta:
        call("meta")
    assert str(meta.value).splitlines()[0] == str(cpu.value).splitlines()[0]
