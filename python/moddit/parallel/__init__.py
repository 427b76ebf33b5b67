"""Sequence parallelism for moddit: one video spread over several GPUs (or
processes), as xDiT / yunchang and diffusers' context parallelism do it.

- Ulysses: an all-to-all gives each rank every token for H/P of the heads;
  moddit's Session runs those heads (MOD-DiT state, fits and masks, Sparse-vDiT
  choices for them only); an all-to-all brings the output back.
- Ring (ring degree > 1): ranks keep their query rows and exchange K/V chunks;
  moddit's chunk calls run each query run against each key run on the plan's
  layout sliced to that pair, and the partials merge exactly by their LSE;
  chunk pairs with no live block are skipped without a transfer. MOD-DiT's
  record and refresh calls run under Ulysses (a map needs the final LSE).

Communication is torch.distributed (NCCL on GPUs, gloo on the CPU); the groups
are the framework's (Groups.from_xdit, Groups.from_diffusers). Users of diffusers
or xDiT pipelines call moddit.diffusers.enable(pipe, parallel=...) or
moddit.xdit.enable(pipe); docs/PARALLEL.md has the details and the limits.
"""
from .groups import Groups
from .ring import merge_into, ring_attention
from .session import ParallelSession, make_local_policy, slice_vdit_config
from .sharding import Sharding

__all__ = ["Groups", "ParallelSession", "Sharding", "make_local_policy", "merge_into",
           "ring_attention", "slice_vdit_config"]
