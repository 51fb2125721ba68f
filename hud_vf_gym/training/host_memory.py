"""Hand memory the C allocator keeps after PyTorch frees it back to the operating system, between training phases.

On CPU, PyTorch allocates tensors with `malloc`. glibc serves blocks under its mmap threshold (which rises to 32 MiB
once larger blocks are freed) from heaps it keeps: a freed activation or gradient stays in the process's resident
set, and the next phase, with other sizes or on another thread's heap, often cannot reuse it. On the CPU learning
check that is 0.5-0.9 GiB held at the backward pass's peak (the generation's caches, last step's gradients).
`malloc_trim(0)` returns every free page of every heap; what it costs is the page faults of touching that memory
again. Within the loss pass the same thing happens layer by layer (each checkpointed layer's saved input sits
between the recomputed activations freed around it: 0.65 GiB more at the backward peak for a 1,500-token
sequence), so during that pass `set_mmap_threshold(LOSS_PASS_MMAP_THRESHOLD)` makes every block of 1 MiB or more
a mapping of its own that goes back to the OS when freed, for about 15% more CPU in that pass (bench/grpo_step.py
measures both). Generation, with its many mid-sized cache blocks, keeps glibc's usual 32 MiB.
Where the C library is not glibc, both functions do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any

__all__ = ["GENERATION_MMAP_THRESHOLD", "LOSS_PASS_MMAP_THRESHOLD", "release_free_memory", "set_mmap_threshold"]

LOSS_PASS_MMAP_THRESHOLD = 1 << 20  # 1 MiB: activations of a long sequence, gradients of the larger weights
GENERATION_MMAP_THRESHOLD = 32 << 20  # glibc's own ceiling for its moving threshold on 64-bit systems
_M_MMAP_THRESHOLD = -3  # mallopt's parameter number (malloc.h)


def release_free_memory() -> bool:
    """Return the allocator's free pages to the OS; False where that is not possible (not glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def set_mmap_threshold(size: int) -> bool:
    """Serve blocks of `size` bytes or more straight from the OS (returned when freed); False where not glibc."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, size))


def _malloc_trim() -> Any:
    return _libc_function("malloc_trim")


@functools.cache
def _libc_function(name: str) -> Any:
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        return getattr(ctypes.CDLL(library), name)
    except (OSError, AttributeError):  # musl, macOS: no malloc_trim or mallopt
        return None
