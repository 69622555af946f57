"""What does not belong in an executed notebook: progress bars, library load reports, profiler log lines,
warnings on stderr, and the return values of calls made for their side effect (a list of saved paths)."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

_BAR = re.compile(r"\d+%\|.*\||it/s\]|s/it\]|examples/s\]")
_NOISE = ("IProgress", "LOAD REPORT", "USDT:", "PosixPath(", "Executing:", "<matplotlib.", "<Figure size")


def stray_outputs(notebook: str | Path) -> list[str]:
    """One line per stray output of an executed notebook (cell number and the start of the text)."""
    found = []
    for number, cell in enumerate(nbformat.read(notebook, as_version=4).cells):
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                text = "".join(out["text"])
                if out["name"] == "stderr" or _BAR.search(text) or any(n in text for n in _NOISE):
                    found.append(f"cell {number}: {out['name']}: {text.strip()[:80]!r}")
            elif out["output_type"] == "execute_result":
                text = "".join(out.get("data", {}).get("text/plain", ""))
                if any(n in text for n in _NOISE):
                    found.append(f"cell {number}: result: {text.strip()[:80]!r}")
    return found
