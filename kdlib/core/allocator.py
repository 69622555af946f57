"""Large tensors reuse freed heap memory instead of fresh pages from the operating system.

glibc's malloc serves every block above its mmap threshold (adaptive, at most 32 MiB) with a mapping of its
own and unmaps it when the block is freed. A training step that allocates such a block every time (the word
embeddings' gradient, 30,522 x 384 floats; at 256 tokens, each layer's attention probabilities) then pays a
page fault for every 4 KiB of it, every step. With the threshold raised those blocks come from the heap and
the next step reuses them. Only where memory comes from changes, not a number the study computes; what it
saves is measured by docs/benchmarks/allocator.py (the file beside it holds the numbers).
"""
from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap, and up to this much free memory at its top is kept for reuse.
KEEP_BYTES = 1 << 30


def reuse_freed_memory(keep_bytes: int = KEEP_BYTES) -> bool:
    """Raise glibc's mmap and trim thresholds to `keep_bytes`; True if set (False off glibc: nothing to do)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, keep_bytes)) and bool(libc.mallopt(M_TRIM_THRESHOLD, keep_bytes))
