"""Recording Q/K/V from a real model run as a moddit trajectory file.

Format (DESIGN.md 6): one safetensors file, tensors q/s{step}/l{layer} (and k/,
v/) of shape [B, N, H, D], __metadata__ moddit.trajectory="1", frames, height,
width, text_tokens, text_valid, text_position, num_steps, source. Tensors are
spooled to disk as they are captured (a real run's Q/K/V do not fit in memory)
and assembled into the file, atomically, by close().
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
from typing import Any, Dict, Iterable, List, Optional, Tuple

import torch

from .. import _moddit as _C

_DTYPES = {"f32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16,
           "bfloat16": torch.bfloat16, "f16": torch.float16, "float16": torch.float16}
_ST_NAMES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}


class Recorder:
    def __init__(self, path: str, layers: Optional[Iterable[int]] = None,
                 steps: Optional[Iterable[int]] = None, slots: Optional[Iterable[int]] = None,
                 dtype: Optional[str] = None, source: Optional[str] = None, tracker=None,
                 on_close=None):
        self.path = os.fspath(path)
        self.layers = None if layers is None else {int(x) for x in layers}
        self.steps = None if steps is None else {int(x) for x in steps}
        self.slots = None if slots is None else {int(x) for x in slots}
        if dtype is not None and dtype not in _DTYPES:
            raise _C.Error(f"record: dtype {dtype!r} is not one of f32, bf16, f16")
        self.dtype = _DTYPES.get(dtype) if dtype else None
        self.source = source
        self.tracker = tracker
        self.on_close = on_close
        self.closed = False
        self.meta: Optional[Dict[str, Any]] = None
        self.shape_nhd: Optional[Tuple[int, int, int]] = None  # N, H, D
        self.chunks: Dict[str, List[Tuple[int, int, int]]] = {}  # name -> (offset, bytes, batch)
        self.tensor_dtype: Optional[torch.dtype] = None
        self.model_name = ""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        _C.check_output_file(self.path)  # before the run, not after it
        # An unnamed file (O_TMPFILE on Linux): nothing is left behind however the
        # process ends.
        self._spool = tempfile.TemporaryFile(dir=directory)
        self._offset = 0

    # --- capture -------------------------------------------------------------------
    def capture(self, controller, step: int, layer: int, slot_begin: int, q, k, v,
                qkv_layout: str, grid: Tuple[int, int, int], text_tokens: int,
                text_valid: List[int]) -> None:
        if self.closed:
            return
        if self.steps is not None and step not in self.steps:
            return
        if self.layers is not None and layer not in self.layers:
            return
        B = int(q.shape[0])
        keep = [i for i in range(B) if self.slots is None or slot_begin + i in self.slots]
        if not keep:
            return
        valid = {text_valid[i] for i in keep}
        if len(valid) != 1:
            raise _C.Error(
                f"record: batch items of layer {layer} have different text lengths {sorted(valid)};"
                " pass slots= with items of one text length (e.g. slots=[0])")
        position = controller.family.text_position if text_tokens > 0 else "none"
        meta = {"frames": grid[0], "height": grid[1], "width": grid[2],
                "text_tokens": text_tokens, "text_valid": valid.pop(),
                "text_position": position}
        if self.meta is None:
            self.meta = meta
            self.model_name = type(controller.model).__name__
        elif meta != self.meta:
            raise _C.Error(f"record: token layout changed during the run ({self.meta} -> {meta}); "
                           "record one video shape per file")
        for name, t in (("q", q), ("k", k), ("v", v)):
            if qkv_layout == "HND":
                t = t.transpose(1, 2)
            if len(keep) != B:
                t = t[keep] if len(keep) > 1 else t[keep[0]:keep[0] + 1]
            dtype = self.dtype or (t.dtype if t.dtype in _ST_NAMES else torch.float32)
            t = t.detach().to(dtype=dtype).contiguous().cpu()
            n, h, d = int(t.shape[1]), int(t.shape[2]), int(t.shape[3])
            if self.shape_nhd is None:
                self.shape_nhd, self.tensor_dtype = (n, h, d), dtype
            elif self.shape_nhd != (n, h, d):
                raise _C.Error(f"record: shape [N, H, D] changed from {list(self.shape_nhd)} "
                               f"to {[n, h, d]} (layer {layer})")
            data = t.view(torch.uint8).numpy().tobytes()
            self._spool.write(data)
            key = f"{name}/s{step}/l{layer}"
            self.chunks.setdefault(key, []).append((self._offset, len(data), int(t.shape[0])))
            self._offset += len(data)

    # --- the file ------------------------------------------------------------------
    def close(self, _disable: bool = True) -> Optional[str]:
        """Writes the trajectory file (atomically) and returns its path; None if
        nothing was captured."""
        if self.closed:
            return self.path
        self.closed = True
        try:
            if not self.chunks:
                return None
            return self._assemble()
        finally:
            self._spool.close()
            if _disable and self.on_close is not None:
                self.on_close()

    def _assemble(self) -> str:
        n, h, d = self.shape_nhd
        batches = {sum(c[2] for c in chunks) for chunks in self.chunks.values()}
        if len(batches) != 1:
            raise _C.Error(f"record: steps/layers captured different batch sizes {sorted(batches)}"
                           " (an interrupted run?)")
        batch = batches.pop()
        num_steps = self.tracker.schedule_length() if self.tracker is not None else 0
        steps = sorted({int(key.split("/")[1][1:]) for key in self.chunks})
        num_steps = max(num_steps, steps[-1] + 1)
        meta = {"moddit.trajectory": "1", "num_steps": str(num_steps),
                "source": self.source or f"recorded from diffusers {self.model_name} by moddit"}
        meta.update({k: str(v) for k, v in self.meta.items()})
        header: Dict[str, Any] = {"__metadata__": meta}
        offset = 0
        names = sorted(self.chunks)
        for name in names:
            size = sum(c[1] for c in self.chunks[name])
            header[name] = {"dtype": _ST_NAMES[self.tensor_dtype], "shape": [batch, n, h, d],
                            "data_offsets": [offset, offset + size]}
            offset += size
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        out = _C.AtomicFile(self.path)
        try:
            out.write(struct.pack("<Q", len(blob)))
            out.write(blob)
            spool = self._spool
            spool.flush()
            for name in names:
                for off, size, _ in self.chunks[name]:
                    spool.seek(off)
                    remaining = size
                    while remaining:
                        buf = spool.read(min(remaining, 64 << 20))
                        if not buf:
                            raise _C.Error(f"record: the spool file ended early ({name})")
                        out.write(buf)
                        remaining -= len(buf)
            out.commit()
        except BaseException:
            out.abort()  # no temporary file left behind
            raise
        return self.path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:  # keep nothing half-written
            self.closed = True
            self._spool.close()
            if self.on_close is not None:
                self.on_close()
        return False
