"""The machine a number was measured on: the one description of it in the project.

Every timing records it, and every timing unit's key holds it, so a timing is reused only on the machine
that took it. It reads /proc/cpuinfo and package metadata, and imports no runtime (the standalone
benchmark uses it on a small device with only numpy and one runtime installed).
"""
from __future__ import annotations

import os
import platform
from functools import lru_cache
from importlib import metadata
from pathlib import Path

# CPU flags that matter for transformer inference speed on CPU (vector width, int8 dot products, bf16).
RELEVANT_CPU_FLAGS = (
    "avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "amx_fp16",
    "asimd", "asimddp",  # arm64 (a Raspberry Pi 5): NEON and its int8 dot product
)
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# The runtimes whose version decides a timing (absent ones are left out).
RUNTIME_PACKAGES = ("torch", "onnxruntime", "openvino", "transformers")


def proc_cpuinfo() -> dict[str, str]:
    """First processor block of /proc/cpuinfo (empty off Linux)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    break  # end of the first processor block
                key, _, value = line.partition(":")
                info[key.strip()] = value.strip()
    except OSError:
        pass
    return info


def cpu_flags() -> set[str]:
    """The CPU's feature flags. Tests replace this function to fake a CPU."""
    info = proc_cpuinfo()
    # x86 calls the field "flags", arm64 calls it "Features".
    return set((info.get("flags") or info.get("Features") or "").split())


def cpu_model() -> str:
    """The CPU's model name. Tests replace this function to fake a CPU."""
    return proc_cpuinfo().get("model name") or platform.processor() or "unknown"


def bf16_supported() -> bool:
    """True only if the CPU has native bf16 instructions (AMX or AVX-512 BF16)."""
    return bool(cpu_flags() & NATIVE_BF16_FLAGS)


@lru_cache(maxsize=None)
def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _board() -> str | None:
    """A single-board computer's name (a Raspberry Pi's device tree), else None."""
    model = Path("/proc/device-tree/model")
    return model.read_text(errors="ignore").strip("\x00\n ") or None if model.exists() else None


def describe() -> dict:
    """What a number was measured on: CPU model, the flags that matter for speed, cores, the system and the
    versions of Python and of each installed runtime."""
    flags = cpu_flags()
    versions = {p: v for p in RUNTIME_PACKAGES if (v := package_version(p))}
    return {"cpu": cpu_model(), "flags": " ".join(f for f in RELEVANT_CPU_FLAGS if f in flags),
            "bf16": bool(flags & NATIVE_BF16_FLAGS), "logical_cores": os.cpu_count(), "board": _board(),
            "machine": platform.machine(), "system": platform.system(), "python": platform.python_version(),
            "versions": versions}


def cpu_info() -> dict:
    """The same description as the flat `cpu_*` columns of a benchmark table."""
    d = describe()
    return {"model": d["cpu"], "logical_cores": d["logical_cores"], "flags": d["flags"], "bf16": d["bf16"],
            "torch_version": d["versions"].get("torch")}
