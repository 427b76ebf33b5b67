"""moddit: block-sparse attention for video diffusion transformers.

MOD-DiT (dynamic masks predicted from a least-squares fit of the attention
sparsity map) and Sparse-vDiT (searched static per-head modes), on the CPU
reference backend or the CUDA backend. Tensors come from any DLPack framework
(PyTorch, NumPy, CuPy, JAX) without copies; CUDA work runs on the caller's
current stream. diffusers integration: ``moddit.diffusers.enable(pipe)``.
"""
from . import _moddit
from ._moddit import (  # noqa: F401  (re-exported API)
    BlockGrid,
    BlockLayout,
    BlockMask,
    Backend,
    CallInfo,
    CallKind,
    CallRecord,
    DType,
    DensePolicy,
    Device,
    Error,
    FitRecord,
    HeadGroup,
    ModditConfig,
    ModditPolicy,
    Plan,
    Policy,
    PythonPolicy,
    SessionOptions,
    SparseVditPolicy,
    SyntheticSpec,
    TokenLayout,
    TrajectoryInfo,
    TrajectorySource,
    VditConfig,
    VditHeadChoice,
    VditMode,
    VditSearchOptions,
    blocks_meeting,
    cpu_backend,
    cuda_available,
    cuda_backend,
    dense_plan,
    full_layout,
    inspect_file,
    make_block_grid,
    make_synthetic,
    open_trajectory,
    layout_from_video_masks,
    place_video_mask,
    search_vdit,
    slice_layout,
    to_layout,
    to_mask,
    video_density,
    write_trajectory,
)
from ._api import (  # noqa: F401
    POLICY_NAMES,
    Session,
    attention,
    dense_attention,
    evaluate,
    get_backend,
    make_policy,
    moddit_config,
    set_cpu_threads,
    sparse_attention,
)

__version__ = "0.1.0"
__all__ = [
    'BlockGrid', 'BlockLayout', 'BlockMask', 'Backend', 'CallInfo', 'CallKind',
    'CallRecord', 'DType', 'DensePolicy', 'Device', 'Error', 'FitRecord', 'HeadGroup',
    'ModditConfig', 'ModditPolicy', 'Plan', 'Policy', 'PythonPolicy', 'SessionOptions',
    'SparseVditPolicy', 'SyntheticSpec', 'TokenLayout', 'TrajectoryInfo',
    'TrajectorySource', 'VditConfig', 'VditHeadChoice', 'VditMode', 'VditSearchOptions',
    'blocks_meeting', 'cpu_backend', 'cuda_available', 'cuda_backend', 'dense_plan',
    'full_layout', 'slice_layout',
    'inspect_file', 'make_block_grid', 'make_synthetic', 'open_trajectory',
    'layout_from_video_masks', 'place_video_mask', 'search_vdit', 'to_layout', 'to_mask', 'video_density',
    'write_trajectory', 'POLICY_NAMES', 'Session', 'attention', 'dense_attention',
    'evaluate', 'get_backend', 'make_policy', 'moddit_config', 'set_cpu_threads',
    'sparse_attention', "built_with_cuda",
]
built_with_cuda: bool = _moddit.built_with_cuda


def __getattr__(name):
    # `moddit.diffusers`, `.parallel` and `.xdit` import torch (and diffusers,
    # xfuser): loaded on first use only.
    if name in ("diffusers", "parallel", "xdit"):
        import importlib

        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'moddit' has no attribute {name!r}")
