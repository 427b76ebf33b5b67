"""Framework glue: outputs allocated in the caller's framework, the caller's
current CUDA stream, and where a DLPack tensor lives. No copies of inputs."""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Sequence, Tuple

# DLPack device types (dlpack.h).
DL_CPU, DL_CUDA, DL_CUDA_HOST, DL_CUDA_MANAGED = 1, 2, 3, 13


def _module_root(x: Any) -> str:
    return type(x).__module__.split(".", 1)[0]


def is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def compiling() -> bool:
    """Whether torch.compile (dynamo) is tracing the caller."""
    torch = sys.modules.get("torch")
    return torch is not None and torch.compiler.is_compiling()


def eager_under_compile(fn: Callable) -> Callable:
    """fn, run by Python outside the graph (a graph break) when torch.compile
    traces its caller: for calls whose arguments are host objects dynamo cannot
    read. Outside torch.compile, fn itself."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        if compiling():
            return sys.modules["torch"].compiler.disable(fn, recursive=True)(*args, **kwargs)
        return fn(*args, **kwargs)

    return call


def device_of(x: Any) -> Tuple[str, int]:
    """('cpu', 0) or ('cuda', index) of a DLPack-capable tensor."""
    if hasattr(x, "__dlpack_device__"):
        kind, index = x.__dlpack_device__()
        kind = int(kind)
        if kind in (DL_CPU, DL_CUDA_HOST):
            return "cpu", 0
        if kind in (DL_CUDA, DL_CUDA_MANAGED):
            return "cuda", int(index)
        return f"dlpack-device-{kind}", int(index)
    return "cpu", 0  # buffer-protocol objects (NumPy without DLPack, memoryview)


def as_input(x: Any) -> Any:
    """A tensor nanobind can import without a copy (autograd-tracked PyTorch
    tensors refuse DLPack export, so they are detached: a view, not a copy)."""
    if is_torch(x) and x.requires_grad:
        return x.detach()
    if _module_root(x) in ("jax", "jaxlib") and hasattr(x, "block_until_ready"):
        # JAX dispatches asynchronously on its own streams: wait until the
        # buffer is written before moddit reads it.
        x.block_until_ready()
    return x


def current_stream(x: Any) -> int:
    """The caller's current CUDA stream for x's device as an integer
    (0 = legacy default stream; also for CPU tensors)."""
    kind, index = device_of(x)
    if kind != "cuda":
        return 0
    if is_torch(x):
        import torch

        return int(torch.cuda.current_stream(x.device).cuda_stream)
    if _module_root(x) == "cupy":
        import cupy

        return int(cupy.cuda.get_current_stream().ptr)
    return 0


def empty(like: Any, shape: Sequence[int], dtype: str | None = None) -> Any:
    """An uninitialised array in like's framework and device. dtype None = like's,
    else 'float32' or 'int32'."""
    shape = tuple(int(s) for s in shape)
    if is_torch(like):
        import torch

        dt = like.dtype if dtype is None else getattr(torch, dtype)
        return torch.empty(shape, dtype=dt, device=like.device)
    root = _module_root(like)
    if root == "numpy":
        import numpy as np

        return np.empty(shape, dtype=like.dtype if dtype is None else np.dtype(dtype))
    if root == "cupy":
        import cupy

        with cupy.cuda.Device(like.device.id):
            return cupy.empty(shape, dtype=like.dtype if dtype is None else cupy.dtype(dtype))
    if hasattr(like, "__array_namespace__") and root not in ("jax", "jaxlib"):
        xp = like.__array_namespace__()
        dt = like.dtype if dtype is None else getattr(xp, dtype)
        return xp.empty(shape, dtype=dt, device=like.device)
    if device_of(like)[0] == "cpu":
        # Immutable arrays (JAX) and unknown frameworks: NumPy output on the CPU.
        import numpy as np

        if dtype is None:
            return np.empty(shape, dtype=np.dtype(str(like.dtype)))
        return np.empty(shape, dtype=np.dtype(dtype))
    raise TypeError(
        f"moddit: cannot allocate an output like a {type(like).__name__} on "
        f"{device_of(like)[0]}; pass out= (and lse/map buffers) explicitly")


def fill(x: Any, value: int) -> None:
    if is_torch(x):
        x.fill_(value)
    else:
        x[...] = value
