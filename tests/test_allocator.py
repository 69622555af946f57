"""Large tensors reuse freed memory (kdlib/core/allocator.py): once the heap has grown, a block of the same size
costs no fresh pages from the operating system, where glibc's defaults map (and fault in) every one anew."""
from __future__ import annotations

import json
import platform
import resource
import subprocess
import sys

import pytest

BLOCK = 64 * 2**20  # above glibc's largest default mmap threshold (32 MiB)
PAGES = BLOCK // resource.getpagesize()
ALLOCATIONS = 20

CHILD = f"""
import json, resource, sys
if sys.argv[1] == "kdlib":
    import kdlib  # noqa: F401  (importing kdlib sets the allocator, as in every process of the study)
import torch
faults = []
for _ in range({ALLOCATIONS}):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones({BLOCK // 4})  # allocated and written: each page the OS hands out faults once
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del block
print(json.dumps(faults))
"""


def page_faults(mode: str) -> list[int]:
    """Page faults of each of ALLOCATIONS blocks of BLOCK bytes, allocated, written and freed in turn."""
    done = subprocess.run([sys.executable, "-c", CHILD, mode], check=True, capture_output=True, text=True)
    return json.loads(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_a_freed_large_block_is_reused_without_page_faults():
    from kdlib.core.allocator import reuse_freed_memory

    assert reuse_freed_memory()
    default, reused = page_faults("default"), page_faults("kdlib")
    assert min(default) > PAGES // 2  # mapped anew every time
    # The heap grows a few times (small objects between the freed blocks keep them apart), then it serves the
    # block from freed memory: the steady state of a training loop.
    assert max(reused[-5:]) < PAGES // 10
