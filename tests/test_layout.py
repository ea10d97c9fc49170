"""The package layout: stages import only the stages below them, the core never imports the API, no name twice.

A stage is a top-level module (``tuner.errors``) or a package (``tuner.storage``). ``ORDER`` lists them
from the bottom up, as README's layout section does; every import counts, inside functions too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

TUNER = Path(__file__).resolve().parents[1] / "tuner"

ORDER = [
    "tuner",  # __version__
    "tuner.errors",
    "tuner.trial",
    "tuner.model_info",
    "tuner.pool",
    "tuner.config",
    "tuner.storage",
    "tuner.samplers",
    "tuner.triton",
    "tuner.measure",
    "tuner.model",
    "tuner.workers",
    "tuner.replay",
    "tuner.study",
    "tuner.reports",
    "tuner.cli",
]


def _sources() -> list[Path]:
    """The tuner's Python files, less Alembic's revisions and the model Triton runs (no tuner imports)."""
    return [p for p in sorted(TUNER.rglob("*.py")) if "versions" not in p.parts and "ort_runner" not in p.parts]


def _stage(dotted: str) -> str:
    parts = dotted.split(".")
    if parts[0] != "tuner":
        return parts[0]
    return ".".join(parts[:2]) if len(parts) > 1 and parts[1] != "__version__" else "tuner"


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, inside a function) of every tuner or api import in a file."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, inner) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                if child.module == "tuner":
                    found.extend((f"tuner.{alias.name}", inner) for alias in child.names)
                else:
                    found.append((child.module, inner))
            else:
                visit(child, inner)

    visit(ast.parse(path.read_bytes()), False)
    return [(module, lazy) for module, lazy in found if module.split(".")[0] in ("tuner", "api")]


def _edges() -> dict[tuple[str, str], set[bool]]:
    edges: dict[tuple[str, str], set[bool]] = defaultdict(set)
    for path in _sources():
        parts = list(path.relative_to(TUNER.parent).with_suffix("").parts)
        source = _stage(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
        for module, lazy in _imports(path):
            target = _stage(module)
            if target != source:
                edges[(source, target)].add(lazy)
    return edges


def test_every_stage_is_in_the_order() -> None:
    stages = {source for source, _ in _edges()}
    assert stages - set(ORDER) == set(), "a new stage: place it in ORDER (and README's layout)"


def test_stages_import_only_the_stages_below_them() -> None:
    rank = {stage: i for i, stage in enumerate(ORDER)}
    upward = [
        (source, target)
        for (source, target) in _edges()
        if target in rank and source in rank and rank[target] > rank[source]
    ]
    assert upward == []


def test_only_the_cli_imports_the_api_and_only_inside_its_commands() -> None:
    importers = {source: kinds for (source, target), kinds in _edges().items() if target == "api"}
    assert importers == {"tuner.cli": {True}}


def test_no_public_name_is_defined_twice_in_the_tuner() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in _sources():
        for node in ast.parse(path.read_bytes()).body:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            else:
                names = []
            for name in names:
                if not name.startswith("_") and name not in ("logger", "router", "T"):
                    where[name].append(str(path.relative_to(TUNER.parent)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}
