"""Hand memory the C allocator keeps after PyTorch frees it back to the operating system, between training phases.

On CPU, PyTorch allocates tensors with `malloc`. glibc serves blocks under its mmap threshold (which rises to 32 MiB
once larger blocks are freed) from heaps it keeps: a freed activation or gradient stays in the process's resident
set, and the next phase, with other sizes or on another thread's heap, often cannot reuse it. On the CPU learning
check that is 0.5-0.9 GiB held at the backward pass's peak (the generation's caches, last step's gradients).
`malloc_trim(0)` returns every free page of every heap; what it costs is the page faults of touching that memory
again (measured in bench/grpo_step.py). Where the C library is not glibc, `release_free_memory` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

__all__ = ["release_free_memory"]


def release_free_memory() -> bool:
    """Return the allocator's free pages to the OS; False where that is not possible (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim
        return None
