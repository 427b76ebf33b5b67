"""Integer handles of live Python objects (Sessions, diffusers controllers and
processors), so that a custom operator can name the object it works on: an
operator's arguments are tensors and numbers, never arbitrary objects. A handle
dies with its object (weak references); looking a dead one up is an error."""
from __future__ import annotations

import itertools
import threading
import weakref
from typing import Any, Dict

from . import _moddit as _C

_objects: Dict[int, "weakref.ref[Any]"] = {}
_lock = threading.Lock()
_next = itertools.count(1)


def register(obj: Any) -> int:
    """A new handle of obj (valid while obj lives)."""
    with _lock:
        handle = next(_next)
        _objects[handle] = weakref.ref(obj, lambda _ref, h=handle: _objects.pop(h, None))
    return handle


def lookup(handle: int, what: str) -> Any:
    ref = _objects.get(int(handle))
    obj = ref() if ref is not None else None
    if obj is None:
        raise _C.Error(f"moddit: {what} handle {int(handle)} names no live object "
                       "(it was disabled or garbage-collected)")
    return obj
