"""The trained model's attention statistics (issue 11 item 5), collected during
the dense reference run on the first `items` videos of every call:

- the oracle's recall against density, per layer and head and over all, for the
  row oracle (the quality policy) and the global one (moddit eval's), over the
  sparse steps (>= warmup) and per step at 0.15;
- how fast the maps change: the overlap of the row oracle's top blocks at 0.15
  between step t and t + 1, the Pearson correlation of the block mass (off the
  diagonal) and of MOD-DiT's sparsity map S (share of pairs with P < eta, from
  moddit's map pass) between t and t + 1, and from each possible last warm-up
  step m - 1 to every later step: overlap, correlations, and the recall a mask
  frozen at m - 1 keeps at step t as a share of that step's own oracle;
- the row oracle's rel_l2 at densities 0.10 / 0.15 / 0.20 (moddit's sparse
  kernel on the oracle layout against dense attention).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, List, Sequence

import numpy as np
import torch

import moddit

from . import attention as att

CURVE_DENSITIES = (0.02, 0.05, 0.075, 0.10, 0.125, 0.15, 0.20, 0.25, 0.30, 0.40, 0.50, 0.70)
REL_L2_DENSITIES = (0.10, 0.15, 0.20)
MAP_DENSITY = 0.15


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Correlation over the last two dims (off the diagonal), per leading index."""
    n = a.shape[-1]
    off = ~torch.eye(n, dtype=torch.bool, device=a.device)
    x, y = a[..., off].double(), b[..., off].double()
    x = x - x.mean(-1, keepdim=True)
    y = y - y.mean(-1, keepdim=True)
    return (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1)).clamp_min(1e-30)


class DenseStats:
    def __init__(self, items: int, block: int, tokens, grid, warmup: int,
                 ref_steps: Sequence[int], eta: float = 1e-4, device_backend=None):
        self.items = int(items)
        self.block = int(block)
        self.tokens, self.grid = tokens, grid
        self.warmup = int(warmup)
        self.ref_steps = sorted({int(s) for s in ref_steps})
        self.eta = float(eta)
        self.records: List = []                 # (step, layer, branch, dict of tensors)
        self._prev: Dict = {}                   # (layer, branch) -> (step, mask, mass, S)
        self._refs: Dict = {}                   # (layer, branch, ref step) -> (mask, mass, S)

    @torch.no_grad()
    def observe(self, step: int, layer: int, branch: int, q, k, v, out) -> None:
        S = min(self.items, int(q.shape[0]))
        qs, ks, vs = q[:S], k[:S], v[:S]
        mass = att.block_mass(qs, ks, self.block)                      # [S, H, n, n]
        order, sorted_mass = att._row_order(mass)
        rec: Dict[str, torch.Tensor] = {}
        rec["row_curve"] = att.row_oracle_recall(mass, CURVE_DENSITIES, sorted_mass).mean(1)
        rec["global_curve"] = att.global_oracle_recall(mass, CURVE_DENSITIES).mean(1)
        # [len(d), H] after averaging over items
        ref = att.sdpa_nhd(qs, ks, vs)
        errs = []
        for d in REL_L2_DENSITIES:
            layout = att.layout_of(att.row_oracle_masks(mass, d), self.grid)
            o = moddit.attention(qs, ks, vs, self.tokens, layout=layout, block_size=self.block)
            errs.append(att.rel_l2(o, ref))
        rec["oracle_rel_l2"] = torch.stack(errs)                         # [len, H]
        _, _, counts = moddit.attention(qs, ks, vs, self.tokens, block_size=self.block,
                                        return_lse=True, return_map=True, eta=self.eta)
        smap = counts.float() / float(self.block * self.block)          # [S, H, n, n]
        mask = att.row_oracle_masks(mass, MAP_DENSITY)
        key = (layer, branch)
        prev = self._prev.get(key)
        if prev is not None and prev[0] == step - 1:
            _, pmask, pmass, psmap = prev
            rec["next_overlap"] = ((mask & pmask).float().sum((2, 3))
                                   / pmask.float().sum((2, 3))).mean(0)
            rec["next_mass_corr"] = _pearson(pmass, mass).mean(0)
            rec["next_smap_corr"] = _pearson(psmap, smap).mean(0)
        own = att.recall_of(mask, mass)
        for s in self.ref_steps:
            r = self._refs.get((layer, branch, s))
            if r is None or step <= s:
                continue
            rmask, rmass, rsmap = r
            rec[f"from{s}_overlap"] = ((mask & rmask).float().sum((2, 3))
                                       / rmask.float().sum((2, 3))).mean(0)
            rec[f"from{s}_mass_corr"] = _pearson(rmass, mass).mean(0)
            rec[f"from{s}_smap_corr"] = _pearson(rsmap, smap).mean(0)
            rec[f"from{s}_stale_recall"] = att.recall_of(rmask, mass) / own.clamp_min(1e-30)
        if step in self.ref_steps:
            self._refs[(layer, branch, step)] = (mask, mass, smap)
        self._prev[key] = (step, mask, mass, smap)
        self.records.append((step, layer, branch, rec))

    def summary(self) -> Dict:
        """Everything as plain numbers (one sync)."""
        rows = []
        for step, layer, branch, rec in self.records:
            rows.append((step, layer, branch, {k: v.cpu().numpy() for k, v in rec.items()}))
        if not rows:
            return {}
        heads = rows[0][3]["oracle_rel_l2"].shape[1]
        layers = sorted({r[1] for r in rows})
        sparse = [r for r in rows if r[0] >= self.warmup] or rows

        def curve(key, rs):
            return np.mean([r[3][key] for r in rs], axis=0)       # [len(d), H]

        out: Dict = {
            "items_per_call": self.items, "warmup": self.warmup, "block_size": self.block,
            "densities": list(CURVE_DENSITIES), "rel_l2_densities": list(REL_L2_DENSITIES),
            "map_density": MAP_DENSITY, "eta": self.eta, "ref_steps": self.ref_steps,
            "steps_counted": f">= {self.warmup} (the sparse steps)",
        }
        for kind in ("row", "global"):
            key = f"{kind}_curve"
            allc = curve(key, sparse)
            out[f"oracle_recall_{kind}"] = {
                "all": allc.mean(1).tolist(),
                "per_layer": {str(l): curve(key, [r for r in sparse if r[1] == l]).mean(1).tolist()
                              for l in layers},
                "per_layer_head": {f"{l}.{h}": curve(key, [r for r in sparse if r[1] == l])[:, h]
                                   .tolist() for l in layers for h in range(heads)},
                "all_steps": curve(key, rows).mean(1).tolist(),
            }
        i15 = CURVE_DENSITIES.index(0.15)
        steps = sorted({r[0] for r in rows})
        out["oracle_recall_015_per_step"] = {
            kind: {str(s): float(curve(f"{kind}_curve", [r for r in rows if r[0] == s])[i15].mean())
                   for s in steps} for kind in ("row", "global")}
        rl = curve("oracle_rel_l2", sparse)
        out["oracle_rel_l2"] = {
            "all": dict(zip([f"{d:.2f}" for d in REL_L2_DENSITIES], rl.mean(1).tolist())),
            "per_layer": {str(l): dict(zip([f"{d:.2f}" for d in REL_L2_DENSITIES],
                                           curve("oracle_rel_l2",
                                                 [r for r in sparse if r[1] == l]).mean(1).tolist()))
                          for l in layers}}

        def per_step(key):
            vals = defaultdict(list)
            for s, _, _, rec in rows:
                if key in rec:
                    vals[s].append(float(np.mean(rec[key])))
            return {str(s): float(np.mean(v)) for s, v in sorted(vals.items())}

        change = {"next_step": {k: per_step(f"next_{k}") for k in ("overlap", "mass_corr",
                                                                    "smap_corr")}}
        for k in ("overlap", "mass_corr", "smap_corr"):
            vals = [float(np.mean(rec[f"next_{k}"])) for s, _, _, rec in rows
                    if f"next_{k}" in rec and s >= self.warmup]
            change["next_step"][f"{k}_mean_sparse_steps"] = float(np.mean(vals)) if vals else None
        for s in self.ref_steps:
            change[f"from_step_{s}"] = {k: per_step(f"from{s}_{k}")
                                        for k in ("overlap", "mass_corr", "smap_corr",
                                                  "stale_recall")}
            for k in ("overlap", "stale_recall"):
                vals = [float(np.mean(rec[f"from{s}_{k}"])) for t, _, _, rec in rows
                        if f"from{s}_{k}" in rec and t >= self.warmup]
                change[f"from_step_{s}"][f"{k}_mean_sparse_steps"] = (float(np.mean(vals))
                                                                      if vals else None)
        out["map_change"] = change
        return out
