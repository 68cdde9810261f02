"""The package's layout holds: imports point down the layers of DESIGN.md (import-linter, `lint-imports`), no module
imports another that imports it back, an import inside a function is there only to keep a heavy package out of
`rmlab --help`, and each registry names the same choices as the config schema's enum."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "transformers", "peft", "datasets", "wandb", "pandas", "matplotlib", "pyarrow", "safetensors"}


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    env = {"PYTHONPATH": str(cwd), "PATH": str(exe.parent)}
    return subprocess.run([str(exe), "--no-cache"], cwd=cwd, capture_output=True, text=True, env=env)


def test_imports_point_down_the_layers():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The same check on a copy of the package with one upward import hidden inside a function (data -> cli)."""
    shutil.copytree(ROOT / "rmlab", tmp_path / "rmlab", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "rmlab" / "data" / "records.py", "a") as f:
        f.write("\n\ndef _upward():\n    from rmlab.cli import main\n\n    return main\n")
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0 and "rmlab.data.records -> rmlab.cli" in proc.stdout, proc.stdout


def _modules() -> dict[str, Path]:
    out = {}
    for f in (ROOT / "rmlab").rglob("*.py"):
        name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = f
    return out


MODULES = _modules()


def _imports(name: str) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(module-level imports, imports inside functions) of a module, as (imported module, line)."""
    tree = ast.parse(MODULES[name].read_text())
    inner = {
        id(n)
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        for n in ast.walk(fn)
        if isinstance(n, ast.Import | ast.ImportFrom)
    }
    top, inside = [], []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from rmlab.x import y` imports rmlab.x.y when y is a module, else rmlab.x
            targets = [t if t in MODULES else node.module for t in (f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for target in dict.fromkeys(targets):
            (inside if id(node) in inner else top).append((target, node.lineno))
    return top, inside


def _parents(name: str) -> list[str]:
    """The packages importing `name` runs first (their __init__)."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in MODULES]


def _is_heavy(name: str, seen: set | None = None) -> bool:
    """Does importing module `name` import a heavy package (at module level, through any chain)?"""
    seen = set() if seen is None else seen
    if name in seen:
        return False
    seen.add(name)
    for target, _ in _imports(name)[0]:
        if target.split(".")[0] in HEAVY or (target in MODULES and _is_heavy(target, seen)):
            return True
    return any(_is_heavy(p, seen) for p in _parents(name))


def test_no_import_cycle_between_modules():
    """Counting imports inside functions too: a cycle hidden by a function-level import would show here. (A package's
    __init__ importing its modules to register them is not counted as the modules importing the package back.)"""
    graph = {
        name: {t for t, _ in [*top, *inside] if t in MODULES and t != name}
        for name, (top, inside) in ((n, _imports(n)) for n in MODULES)
    }
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] if nxt in path else [nxt]
                pytest.fail(f"import cycle: {' -> '.join([*cycle, nxt])}")
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_an_import_inside_a_function_only_defers_a_heavy_package():
    light = [
        f"{name}:{line} imports {target}"
        for name in sorted(MODULES)
        for target, line in _imports(name)[1]
        if target.startswith("rmlab") and not _is_heavy(target)
    ]
    assert not light, "move these to the top of their modules (nothing heavy to defer): " + "; ".join(light)


def test_the_cli_and_config_composition_load_no_heavy_package():
    code = (
        "import sys; import rmlab.cli; from rmlab.launch.grid import grid_runs; grid_runs('demo'); "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY)!r}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_each_registry_names_the_schemas_choices():
    from rmlab.config import schema
    from rmlab.config.stages import STAGES
    from rmlab.eval.ensemble import WEIGHTINGS
    from rmlab.launch.job import stage_body
    from rmlab.models.families import FAMILIES
    from rmlab.models.heads import ACTIVATIONS
    from rmlab.paradigms import PARADIGMS
    from rmlab.rl.advantages import ESTIMATORS
    from rmlab.rl.rewards import REWARDS

    def values(enum) -> list[str]:
        return [m.value for m in enum]

    assert sorted(PARADIGMS) == sorted(values(schema.Paradigm))
    assert sorted(ACTIVATIONS) == sorted(values(schema.Activation))
    assert sorted(FAMILIES) == sorted(values(schema.Family))
    assert sorted(REWARDS) == sorted(values(schema.RewardKind))
    assert sorted(ESTIMATORS) == sorted(values(schema.RLAlgorithm))
    assert sorted(WEIGHTINGS) == sorted(values(schema.EnsembleWeighting))
    assert sorted(values(schema.EnsembleMethod)) == sorted([*WEIGHTINGS, "route"])
    assert sorted(STAGES) == sorted(values(schema.Stage))
    assert all(callable(stage_body(s)) for s in STAGES)
    for name in FAMILIES:  # every family builds tiny (the embedded default), with the processor it says it has
        assert (FAMILIES[name].processor is None) == (name in ("qwen2_5", "qwen3"))


def test_a_registry_refuses_an_entry_missing_part_of_its_protocol():
    from rmlab.errors import ConfigError
    from rmlab.paradigms.base import Paradigm
    from rmlab.util.registry import Registry

    reg = Registry("paradigm", Paradigm)

    class Half:
        name, scalar, metric = "half", True, "pair_accuracy"

        def build(self, cfg): ...

    with pytest.raises(TypeError, match="lacks collate, encoder, loss, score"):
        reg.add("half", Half)
    with pytest.raises(ConfigError, match="unknown paradigm 'x'; known: "):
        reg.get("x")
