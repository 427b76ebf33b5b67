"""The public Python API over the C++ core: attention calls that take any
DLPack tensor, backends per device, policies by name, and the Session."""
from __future__ import annotations

import json
import os
import threading
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from . import _frameworks as fw
from . import _handles
from . import _moddit as _C

_backends: Dict[Tuple[str, int], Any] = {}
_backends_lock = threading.Lock()
_cpu_threads = 0


def set_cpu_threads(threads: int) -> None:
    """Threads of the CPU backend created from now on (0 = all hardware threads).
    Raises moddit.Error for a negative or unusable count (checked here, not when
    the backend is made)."""
    global _cpu_threads
    threads = int(threads)
    if not -2**62 < threads < 2**62:
        raise _C.Error(f"set_cpu_threads: {threads} threads is not a usable thread count")
    _C.check_cpu_threads(threads)
    _cpu_threads = threads
    with _backends_lock:
        _backends.pop(("cpu", 0), None)


def get_backend(device: Union[str, Any] = "cpu") -> Any:
    """The (cached) backend of a device: 'cpu', 'cuda', 'cuda:1', a torch.device,
    or a tensor (its device)."""
    if isinstance(device, str):
        kind, _, idx = device.partition(":")
        key = (kind, int(idx) if idx else 0)
    elif hasattr(device, "type") and hasattr(device, "index") and not hasattr(device, "shape"):
        key = (device.type, device.index or 0)  # torch.device
    else:
        key = fw.device_of(device)
    if key[0] not in ("cpu", "cuda"):
        raise _C.Error(f"no moddit backend for device {key[0]!r} (CPU or CUDA only)")
    with _backends_lock:
        b = _backends.get(key)
        if b is None:
            b = _C.cpu_backend(_cpu_threads) if key[0] == "cpu" else _C.cuda_backend(key[1])
            _backends[key] = b
        return b


def _check_layout(qkv_layout: str) -> int:
    if qkv_layout not in ("NHD", "HND"):
        raise _C.Error(f"qkv_layout must be 'NHD' or 'HND', got {qkv_layout!r}")
    return 1 if qkv_layout == "NHD" else 2  # axis of N in the array


@fw.eager_under_compile
def attention(q: Any, k: Any, v: Any, tokens: Optional[_C.TokenLayout] = None, *,
              layout: Optional[_C.BlockLayout] = None, heads: Optional[Sequence[int]] = None,
              out: Any = None, block_size: int = 128, scale: Optional[float] = None,
              return_lse: bool = False, return_map: bool = False, eta: float = 1e-4,
              qkv_layout: str = "NHD", backend: Any = None, stream: Optional[int] = None,
              q_begin: Optional[int] = None, k_begin: Optional[int] = None,
              precision: str = "exact", map_statistic: str = "eq2"):
    """Attention over q, k, v of shape [B, N, H, D] (qkv_layout='NHD', diffusers
    and flash layout) or [B, H, N, D] ('HND'), any strides with a unit D stride,
    in any DLPack framework (PyTorch, NumPy, CuPy, JAX), on CPU or CUDA, without
    copies. Runs on the caller's current CUDA stream (or `stream`).

    tokens: the TokenLayout (default: N video tokens, no text). layout: a
    BlockLayout (None = dense) over (B, len(heads) or H, blocks, blocks).
    Returns out, or (out, lse[B,H,N] float32, map_counts[B,H,n,n] int32 with -1
    where a block was not computed) as requested by return_lse / return_map.
    map_statistic: what the map holds, "eq2" (pairs with P < eta, paper Eq. 2)
    or "mass" (len_i len_j - len_j * the block's summed P: Eq. 2's units,
    docs/CONFIG.md).

    q_begin / k_begin (ring attention): q holds the query tokens [q_begin,
    q_begin + len(q)) of the sequence `tokens` describes, k and v the key tokens
    [k_begin, k_begin + len(k)); `layout` is then slice_layout() of a
    whole-sequence layout for that chunk pair (no map on a chunk).

    precision: "exact" (the tensors' dtype, fp32 accumulation) or "fp8" (Q, K, V
    and P in e4m3 with per-token/block/channel scales, fp32 accumulation: the
    FP8 tensor cores on Hopper with 128-token blocks, an emulation on the CPU).

    Inside torch.compile this call is a graph break (TokenLayout and BlockLayout
    are host objects dynamo cannot read); torch.ops.moddit.attention takes the
    same call as tensors and numbers and compiles without one (docs/PYTHON.md).
    """
    n_axis = _check_layout(qkv_layout)
    q, k, v = fw.as_input(q), fw.as_input(k), fw.as_input(v)
    if tokens is None:
        tokens = _C.TokenLayout(frames=1, height=int(q.shape[n_axis]), width=1)
    if backend is None:
        backend = get_backend(q)
    if out is None:
        out = fw.empty(q, q.shape)
    B, N = int(q.shape[0]), int(q.shape[n_axis])
    H = int(q.shape[3 - n_axis])
    lse = fw.empty(q, (B, H, N), "float32") if return_lse else None
    counts = None
    if return_map:
        n = _C.make_block_grid(tokens, block_size).num_video_blocks
        counts = fw.empty(q, (B, H, n, n), "int32")
        fw.fill(counts, -1)
    if stream is None:
        stream = fw.current_stream(q)
    _C.attention(backend, q, k, v, out, tokens, block_size, float(scale or 0.0), layout,
                 None if heads is None else [int(h) for h in heads], lse, counts, float(eta),
                 qkv_layout, int(stream), None if q_begin is None else int(q_begin),
                 None if k_begin is None else int(k_begin), str(precision), str(map_statistic))
    if not (return_lse or return_map):
        return out
    result = [out]
    if return_lse:
        result.append(lse)
    if return_map:
        result.append(counts)
    return tuple(result)


def dense_attention(q: Any, k: Any, v: Any, tokens: Optional[_C.TokenLayout] = None, **kw):
    """Dense attention (see attention()); text padding keys are excluded."""
    kw.pop("layout", None)
    return attention(q, k, v, tokens, **kw)


def sparse_attention(q: Any, k: Any, v: Any, layout: _C.BlockLayout,
                     tokens: Optional[_C.TokenLayout] = None, **kw):
    """Block-sparse attention over `layout` (see attention())."""
    return attention(q, k, v, tokens, layout=layout, **kw)


# --- configs and policies ------------------------------------------------------

def moddit_config(config: Union[None, str, os.PathLike, dict, _C.ModditConfig] = None,
                  **overrides: Any) -> _C.ModditConfig:
    """A validated ModditConfig from a JSON file path, a JSON string, a dict, a
    ModditConfig, or defaults; keyword overrides on top (unknown keys refused)."""
    if config is None:
        base: Dict[str, Any] = {}
    elif isinstance(config, _C.ModditConfig):
        base = json.loads(config.to_json())
    elif isinstance(config, dict):
        base = dict(config)
    else:
        text = str(config)
        if text.lstrip().startswith("{"):
            base = json.loads(text)
        else:
            base = json.loads(_C.ModditConfig.load(text).to_json())
    base.update(overrides)
    return _C.ModditConfig.from_json(json.dumps(base))


POLICY_NAMES = ("dense", "moddit", "sparse_vdit")


def make_policy(policy: Union[str, _C.Policy], num_layers: int, num_heads: int,
                config: Any = None, **config_kw: Any) -> _C.Policy:
    """A policy object: 'dense', 'moddit' (config: a ModditConfig, dict, JSON
    string or file; keyword overrides such as target_density=0.15), or
    'sparse_vdit' (config: a VditConfig or the path of a searched config file).
    A Policy instance is returned as is."""
    if not isinstance(policy, str):
        if config is not None or config_kw:
            raise _C.Error("config options given with a policy object: set them on the object")
        return policy
    name = policy.lower().replace("-", "_")
    if name == "dense":
        if config is not None or config_kw:
            raise _C.Error(f"the dense policy takes no options, got {sorted(config_kw) or 'config'}")
        return _C.DensePolicy()
    if name in ("moddit", "mod_dit"):
        return _C.ModditPolicy(moddit_config(config, **config_kw), int(num_layers), int(num_heads))
    if name in ("sparse_vdit", "vdit"):
        if config_kw:
            raise _C.Error(f"sparse_vdit takes its searched config only, got {sorted(config_kw)}")
        if config is None:
            raise _C.Error("sparse_vdit needs config= (a searched VditConfig or its JSON file: "
                           "run `moddit search` on a recorded trajectory)")
        cfg = config if isinstance(config, _C.VditConfig) else _C.VditConfig.load(str(config))
        return _C.SparseVditPolicy(cfg)
    raise _C.Error(f"unknown policy {policy!r} (expected one of {', '.join(POLICY_NAMES)})")


class Session:
    """The per-pipeline controller: told the denoising step, called per layer with
    Q/K/V, asks its policy what to run and writes the output.

    Session(tokens, policy='moddit', device='cpu', num_steps=50, num_layers=...,
    num_heads=..., head_dim=..., block_size=128, eta=None, precision=None,
    warmup_precision=None, config=None, **config_kw)

    eta is MOD-DiT's map threshold and has one source, the policy's config
    (ModditConfig.eta): `eta=` here is the config key, for 'moddit' only. A
    Python policy sets Plan.map_eta on the plans that record the map.
    precision ("exact" or "fp8"): with 'moddit' the config's `precision` (its
    record, sparse and refresh calls), with the other policies every call;
    warmup_precision: the config's `warmup_precision` (MOD-DiT's plain dense
    calls; 'moddit' only). None keeps the config's (default "exact").
    """

    def __init__(self, tokens: _C.TokenLayout, policy: Union[str, _C.Policy] = "moddit", *,
                 device: Any = "cpu", num_steps: int = 50, num_layers: int = 1,
                 num_heads: int = 1, head_dim: int = 128, block_size: Optional[int] = None,
                 eta: Optional[float] = None, precision: Optional[str] = None,
                 warmup_precision: Optional[str] = None, config: Any = None, **config_kw: Any):
        is_moddit = isinstance(policy, str) and policy.lower().replace("-", "_") in (
            "moddit", "mod_dit")
        if is_moddit:
            # One block size and precision for the Session and the MOD-DiT config;
            # eta is the config's.
            if block_size is not None:
                config_kw.setdefault("block_size", block_size)
            if eta is not None:
                config_kw.setdefault("eta", eta)
            if precision is not None:
                config_kw.setdefault("precision", precision)
            if warmup_precision is not None:
                config_kw.setdefault("warmup_precision", warmup_precision)
        else:
            if warmup_precision is not None:
                raise _C.Error("warmup_precision applies to the 'moddit' policy's dense warm-up "
                               "calls; use precision= with other policies")
            if eta is not None:
                raise _C.Error("eta is MOD-DiT's map threshold (the config key 'eta' of the "
                               "'moddit' policy); a Python policy sets Plan.map_eta, others "
                               "record no map")
        pol = make_policy(policy, num_layers, num_heads, config, **config_kw)
        if block_size is None:
            block_size = (pol.config.block_size
                          if isinstance(pol, (_C.ModditPolicy, _C.SparseVditPolicy)) else 128)
        opts = _C.SessionOptions(num_steps=num_steps, num_layers=num_layers, num_heads=num_heads,
                                 head_dim=head_dim, block_size=block_size,
                                 precision="exact" if is_moddit or precision is None else precision)
        self.backend = device if isinstance(device, _C.Backend) else get_backend(device)
        self._s = _C.Session(tokens, opts, self.backend, pol)
        self.policy = pol
        # Names this Session in the torch.compile operators (moddit._torch_ops).
        self._handle = _handles.register(self)

    def begin_step(self, step: int) -> None:
        if fw.compiling():
            from . import _torch_ops  # noqa: F401  (registers torch.ops.moddit)
            import torch

            torch.ops.moddit.session_begin_step(self._handle, step)
            return
        self._s.begin_step(int(step))

    def attention(self, layer: int, q: Any, k: Any, v: Any, out: Any = None,
                  slot_begin: int = -1, qkv_layout: str = "NHD", stream: Optional[int] = None):
        """Runs one call of `layer` and returns out ([B, N, H, D] like q).
        Inside torch.compile (PyTorch tensors) it is the operator
        torch.ops.moddit.session_attention: no graph break."""
        _check_layout(qkv_layout)
        if fw.compiling():
            from . import _torch_ops  # noqa: F401  (registers torch.ops.moddit)
            import torch

            if stream is not None:
                raise _C.Error("Session.attention: stream= is not supported inside torch.compile "
                               "(the call runs on the current stream)")
            result = torch.ops.moddit.session_attention(q, k, v, self._handle, layer, slot_begin,
                                                        qkv_layout)
            if out is None:
                return result
            out.copy_(result)
            return out
        q, k, v = fw.as_input(q), fw.as_input(k), fw.as_input(v)
        if out is None:
            out = fw.empty(q, q.shape)
        if stream is None:
            stream = fw.current_stream(q)
        self._s.attention(int(layer), q, k, v, out, int(slot_begin), qkv_layout, int(stream))
        return out

    tokens = property(lambda self: self._s.tokens)
    grid = property(lambda self: self._s.grid)
    options = property(lambda self: self._s.options)
    history = property(lambda self: self._s.history)
    history_size = property(lambda self: self._s.history_size)

    def history_since(self, first: int, wait: bool = True):
        """The CallRecords from index `first` on; wait=False never waits for the
        GPU (a density the GPU step reports later is NaN there)."""
        return self._s.history_since(int(first), bool(wait))

    def plan_call(self, layer: int, batch: int, slot_begin: int = -1):
        """The policy's Plan for the layer's next call, which the caller runs
        itself (ring attention, moddit.parallel): slots advance as in attention();
        nothing runs or enters the history."""
        return self._s.plan_call(int(layer), int(batch), int(slot_begin))

    def plain_dense(self, layer: int, batch: int, slot_begin: int = -1) -> bool:
        """Whether the policy would run this call as plain dense attention with no
        map and no state change: the caller may run its own dense attention."""
        return self._s.plain_dense(int(layer), int(batch), int(slot_begin))

    def __repr__(self) -> str:
        return (f"<moddit.Session {self.policy.name()} on {self.backend.name}, "
                f"{self.tokens.describe()}>")


# --- evaluation -------------------------------------------------------------------

def evaluate(trajectory: Union[str, os.PathLike, _C.TrajectorySource],
             policies: str = "dense,moddit,oracle", target_density: float = 0.15,
             config: Any = None, threads: int = 0, first_step: int = -1, max_layers: int = 0,
             report_dir: Optional[Union[str, os.PathLike]] = None, **config_kw: Any) -> dict:
    """`moddit eval` in-process: the policies (comma-separated kinds, e.g.
    "dense,moddit,oracle,window,radial"; "moddit:ridge_lambda=1" overrides a key)
    compared at equal density on a trajectory file (or source) against dense
    attention, on the CPU. Returns the report as a dict (docs/EVAL.md), with the
    terminal table under "table"; report_dir also writes report.json and PNGs."""
    source = trajectory
    label = ""
    if not isinstance(trajectory, _C.TrajectorySource):
        label = os.fspath(trajectory)
        source = _C.open_trajectory(label)
    cfg = moddit_config(config, **config_kw)
    text, table, written = _C.evaluate(source, policies, float(target_density), cfg, int(threads),
                                       int(first_step), int(max_layers),
                                       os.fspath(report_dir) if report_dir else "", label)
    report = json.loads(text)
    report["table"] = table
    if written:
        report["files"] = list(written)
    return report
