"""The package's layers, read from the source with ``ast`` (nothing is imported).

Rule: a module of ``mmkd_hf`` imports only modules of its own layer or of a lower one, and imports between its
modules form no circle. Every import counts: at the top of a module, inside functions and classes, absolute or
relative (resolved to absolute module names). The layers, lowest first:

    0  mmkd_hf.utils
    1  mmkd_hf.models          (model folders travel as Hub remote code, see below)
    2  mmkd_hf.data
    3  mmkd_hf.distillation, mmkd_hf.evaluation   (distillation may import evaluation, never the reverse)
    4  mmkd_hf.synthetic
    5  mmkd_hf.hub
    6  mmkd_hf.pipeline, mmkd_hf.cli, and the registration modules: the root ``mmkd_hf/__init__.py`` and
       ``mmkd_hf/metrics.py`` (they import models / evaluation so that importing ``mmkd_hf`` registers the Auto
       classes, the pipeline task and the metric modules; ``from mmkd_hf import X`` below layer 6 is therefore
       an import up a layer: import ``mmkd_hf.models`` instead)

A module outside these packages has no layer and is reported until it is given one here.

Model folders (``mmkd_hf/models/<folder>/*.py``) are copied into saved model folders as remote code, so they may
import only the standard library, torch, transformers (and numpy, which transformers itself requires) and
modules of the same folder by a relative import. An import wrapped in ``try: ... except ImportError`` is optional
(the folder works without it) and is allowed, as long as it points down.

No source file may exceed ``MAX_LINES`` lines.

Each test lists every violation in one failure message, as ``file:line importer -> imported (why)``.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "mmkd_hf"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE
REPO = SOURCE.parents[1]
MAX_LINES = 700

#: layer of each top-level part of the package; modules directly in ``mmkd_hf`` are named by their own name
LAYERS = {
    "utils": 0,
    "models": 1,
    "data": 2,
    "distillation": 3,
    "evaluation": 3,
    "synthetic": 4,
    "hub": 5,
    "pipeline": 6,
    "cli": 6,
    "metrics": 6,
    "": 6,  # the root mmkd_hf/__init__.py
}
#: same-layer imports that are allowed between different top-level parts (importer part, imported part)
ALLOWED_SAME_LAYER = {("distillation", "evaluation")}
#: what model folders may import besides the standard library and their own folder (top-level module names)
REMOTE_CODE_LIBRARIES = {"torch", "transformers", "numpy"}


@dataclass(frozen=True)
class Import:
    path: Path  # the importing file
    line: int
    importer: str  # module name of the importing file
    target: str  # absolute name of the imported module (or of the name's module)
    optional: bool  # inside ``try: ... except ImportError``

    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line} {self.importer} -> {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> list[Path]:
    return sorted(p for p in SOURCE.rglob("*.py") if "__pycache__" not in p.parts)


MODULES = {module_name(path): path for path in source_files()}


def _package_of(path: Path, module: str) -> list[str]:
    parts = module.split(".")
    return parts if path.name == "__init__.py" else parts[:-1]


def _optional_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside a ``try`` whose handlers catch ImportError / ModuleNotFoundError."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Try):
            continue
        names = set()
        for handler in node.handlers:
            types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            names.update(t.id for t in types if isinstance(t, ast.Name))
        if names & {"ImportError", "ModuleNotFoundError"}:
            for statement in node.body:
                guarded.update(id(n) for n in ast.walk(statement) if isinstance(n, (ast.Import, ast.ImportFrom)))
    return guarded


def imports_of(
    path: Path, text: str | None = None, module: str | None = None
) -> tuple[list[Import], list[tuple[int, str, int, bool]]]:
    """(imports of package modules, every import as ``(line, top-level module name, level, optional)``).

    ``text`` and ``module`` default to the file's content and module name."""
    module = module or module_name(path)
    text = path.read_text(encoding="utf-8") if text is None else text
    tree = ast.parse(text, filename=str(path))
    optional = _optional_nodes(tree)
    internal: list[Import] = []
    raw: list[tuple[int, str, int, bool]] = []
    for node in ast.walk(tree):
        is_optional = id(node) in optional
        if isinstance(node, ast.Import):
            for alias in node.names:
                raw.append((node.lineno, alias.name.split(".")[0], 0, is_optional))
                if alias.name.split(".")[0] == PACKAGE:
                    internal.append(Import(path, node.lineno, module, _existing(alias.name), is_optional))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(path, module)
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            raw.append((node.lineno, (node.module or "").split(".")[0], node.level, is_optional))
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                target = candidate if candidate in MODULES else _existing(source)
                internal.append(Import(path, node.lineno, module, target, is_optional))
    return internal, raw


def _existing(name: str) -> str:
    """The longest prefix of ``name`` that is a module of the package."""
    parts = name.split(".")
    while parts and ".".join(parts) not in MODULES:
        parts.pop()
    return ".".join(parts) or name


def part_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def all_imports() -> list[Import]:
    return [imp for path in source_files() for imp in imports_of(path)[0]]


def test_imports_point_down_the_layers():
    violations = []
    for imp in all_imports():
        importer, target = part_of(imp.importer), part_of(imp.target)
        if importer == target:
            continue
        if importer not in LAYERS or target not in LAYERS:
            unknown = importer if importer not in LAYERS else target
            violations.append(f"{imp.where()} (mmkd_hf.{unknown} has no layer)")
            continue
        up = LAYERS[target] > LAYERS[importer]
        sideways = LAYERS[target] == LAYERS[importer] and (importer, target) not in ALLOWED_SAME_LAYER
        if up or sideways:
            violations.append(
                f"{imp.where()} (layer {LAYERS[importer]} {importer or 'root'} imports layer {LAYERS[target]} "
                f"{target or 'root'})"
            )
    assert not violations, f"{len(violations)} import(s) against the layers:\n" + "\n".join(violations)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def test_imports_form_no_circle():
    edges: dict[str, set[str]] = defaultdict(set)
    sites: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for imp in all_imports():
        if imp.target != imp.importer:
            edges[imp.importer].add(imp.target)
            sites[imp.importer, imp.target].append(imp)
    lines = []
    for component in _cycles(edges):
        members = set(component)
        lines.append(f"circle between {', '.join(component)}:")
        for (importer, target), found in sorted(sites.items()):
            if importer in members and target in members:
                lines.extend(f"  {imp.where()}" for imp in found)
    assert not lines, "imports in a circle:\n" + "\n".join(lines)


def test_model_folders_import_only_what_remote_code_can():
    stdlib = set(sys.stdlib_module_names)
    violations = []
    for path in source_files():
        relative = path.relative_to(SOURCE)
        if len(relative.parts) != 3 or relative.parts[0] != "models":
            continue
        module = module_name(path)
        for line, top, level, optional in imports_of(path)[1]:
            if level == 1 or top in stdlib or top in REMOTE_CODE_LIBRARIES or optional:
                continue
            what = "a relative import outside the folder" if level else top
            violations.append(f"{path.relative_to(REPO)}:{line} {module} -> {what} (not available to remote code)")
    assert not violations, f"{len(violations)} import(s) that remote code cannot resolve:\n" + "\n".join(violations)


def test_no_source_file_is_too_long():
    too_long = []
    for path in source_files():
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > MAX_LINES:
            too_long.append(f"{path.relative_to(REPO)}: {count} lines")
    assert not too_long, f"files over {MAX_LINES} lines:\n" + "\n".join(too_long)


def test_the_checker_resolves_relative_and_function_level_imports():
    """The checker itself: relative imports, imports inside functions and optional imports are all seen."""
    text = (
        "from .configs import TransformConfig\n"
        "def f():\n"
        "    from ..distillation import losses\n"
        "    from .. import utils\n"
        "try:\n"
        "    import mmkd_hf.hub.cards\n"
        "except ImportError:\n"
        "    pass\n"
    )
    probe = SOURCE / "evaluation" / "probe.py"
    found = {(imp.target, imp.optional) for imp in imports_of(probe, text, "mmkd_hf.evaluation.probe")[0]}
    assert found == {
        ("mmkd_hf.evaluation", False),  # no evaluation.configs: the package itself
        ("mmkd_hf.distillation.losses", False),
        ("mmkd_hf.utils", False),
        ("mmkd_hf.hub.cards", True),
    }
    package = SOURCE / "data" / "__init__.py"
    targets = {imp.target for imp in imports_of(package, "from .configs import MODALITIES\n", "mmkd_hf.data")[0]}
    assert targets == {"mmkd_hf.data.configs"}
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
