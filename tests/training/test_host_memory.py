"""`release_free_memory` returns the C allocator's free pages to the OS (glibc's malloc_trim)."""

from __future__ import annotations

import ctypes.util

import numpy as np
import psutil
import pytest

from hud_vf_gym.training.host_memory import release_free_memory

pytestmark = pytest.mark.skipif(
    "libc.so" not in str(ctypes.util.find_library("c")), reason="malloc_trim is glibc's (Linux)"
)


def test_memory_freed_between_live_blocks_goes_back_to_the_os() -> None:
    process = psutil.Process()
    # 100 KiB blocks sit under glibc's mmap threshold: they come from its heap, as most activations do on CPU
    blocks = [np.ones(100 * 1024, dtype=np.uint8) for _ in range(3000)]
    kept = blocks[::10]  # the live ones pin the heap: freeing the rest leaves holes glibc keeps by itself
    del blocks
    before = process.memory_info().rss
    assert release_free_memory()
    after = process.memory_info().rss
    assert before - after > 100 * 1024 * 1024, f"only {(before - after) / 2**20:.0f} MiB returned"
    assert all(int(block[0]) == 1 for block in kept)  # what is still in use was not touched
