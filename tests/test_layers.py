"""kdlib in layers: every import points down (core <- inference, compress <- pipeline <- studies <- report, teach
<- cli),
no import cycle, imports at the top of each module, and the standalone benchmark importable without torch."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

KDLIB = Path(__file__).resolve().parents[1] / "kdlib"
# Each subpackage's rank: a module may import its own layer and the layers below it. inference and compress
# share a rank and do not import each other; so do report and teach (the course material).
RANK = {"core": 0, "inference": 1, "compress": 1, "pipeline": 2, "studies": 3, "report": 4, "teach": 4, "cli": 5}
# Imports that may sit inside a function: runtimes and tools a machine may lack (a small device that only runs
# the benchmark, a user without OpenVINO), each imported where it is used.
OPTIONAL = ("onnxruntime", "openvino", "nncf", "typst")
# The benchmark runs a saved torch model only when asked for; the command line imports the study (torch)
# only past the benchmark's branch.
# transformers.trainer (seconds to import) is imported by pipeline/notebook.py only in the kernels of
# `kdstudy run`, which silence its progress table.
# The peak's int8 product is an ONNX graph, built only where ONNX Runtime is installed.
LAZY_ALLOWED = {"inference/bench.py": ("torch", "transformers"), "cli.py": ("kdlib",),
                "pipeline/notebook.py": ("transformers",), "inference/peak.py": ("onnx",)}


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(KDLIB.rglob("*.py")):
        parts = path.relative_to(KDLIB.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def kdlib_imports(path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(module, line) of every kdlib module `path` imports, wherever the import sits."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kdlib"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub if sub in known else node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("kdlib")]
    return found


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cli"


def test_every_module_belongs_to_a_layer():
    strays = [m for m in modules() if m != "kdlib" and layer(m) not in RANK]
    assert not strays, f"modules outside the layers {sorted(RANK)}: {strays}"


def test_imports_point_down_the_layers():
    known = set(modules())
    upward = []
    for module, path in modules().items():
        if module == "kdlib":
            continue
        mine = layer(module)
        for target, line in kdlib_imports(path, known):
            theirs = layer(target) if target != "kdlib" else mine
            if RANK[theirs] > RANK[mine] or (RANK[theirs] == RANK[mine] and theirs != mine):
                upward.append(f"{path.relative_to(KDLIB.parent)}:{line} ({mine}) imports {target} ({theirs})")
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_import_cycle():
    known = set(modules())
    graph = {m: {t for t, _ in kdlib_imports(p, known) if t in known and t != m} for m, p in modules().items()}
    # A package's __init__ that a submodule imports is not a cycle unless the package imports it back.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_imports_sit_at_the_top_of_each_module():
    misplaced = []
    for module, path in modules().items():
        rel = path.relative_to(KDLIB).as_posix()
        allowed = (*OPTIONAL, *LAZY_ALLOWED.get(rel, ()))
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    if not any(name == a or name.startswith(a + ".") for a in allowed):
                        misplaced.append(f"{rel}:{node.lineno} imports {name} inside {fn.name}()")
    assert not misplaced, "imports inside functions:\n" + "\n".join(misplaced)


def test_each_subpackage_says_what_it_holds():
    for init in KDLIB.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "import" in doc, f"{init.relative_to(KDLIB.parent)}: no docstring saying what it may import"


def test_the_benchmark_runs_without_torch_or_transformers(tmp_path):
    """`kdstudy bench` imports stay light: a device with numpy, tokenizers and one runtime runs it."""
    code = ("import sys\n"
            "for name in ('torch', 'transformers', 'datasets', 'pandas', 'sklearn', 'matplotlib'):\n"
            "    sys.modules[name] = None  # importing it now raises ImportError\n"
            "from kdlib import cli\n"
            "from kdlib.inference import bench\n"
            "assert cli._parser().parse_args(['bench', '--model', 'm.onnx', '--data', 'q.json', '--out', 'r.json']).command == 'bench'\n"
            "print('light')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "light", out.stderr
