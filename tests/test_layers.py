"""The imports of maft_plus follow the layer table of docs/design.md, and no module loops back.

The table is read from the document itself, so the document and the code cannot drift apart.
Imports inside functions count too: a loop hidden in a function is still a loop.
"""

import ast
import re
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "maft_plus"
DESIGN = REPO / "docs" / "design.md"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """The ``maft_plus`` modules ``path`` imports, resolved to absolute dotted names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}  # submodules
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imported_modules(p) for p in PACKAGE.rglob("*.py")}


def top(module: str) -> str:
    """The layer unit of a module: the first name under ``maft_plus``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def allowed_imports() -> dict[str, set[str]]:
    """The "may import" table of docs/design.md section 12: unit -> units it may import."""
    section = DESIGN.read_text(encoding="utf-8").split("## 12. Layers", 1)[1]
    allowed = {}
    for row in re.findall(r"^\| (`.*?) \| (.*?) \|$", section, flags=re.M):
        units = re.findall(r"`(\w+)`", row[0])
        targets = set(re.findall(r"`(\w+)`", row[1]))
        for unit in units:
            allowed[unit] = targets | set(units)
    return allowed


def test_every_import_follows_the_layer_table():
    allowed = allowed_imports()
    units = {top(m) for m in graph()} - {""}
    assert units <= set(allowed), f"units missing from docs/design.md: {units - set(allowed)}"
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if top(module) and top(target) and top(target) not in allowed[top(module)] | {top(module)}
    )
    assert not wrong, "imports against docs/design.md section 12:\n" + "\n".join(wrong)


def test_no_module_imports_itself_back():
    edges = graph()
    # a package's __init__ importing its own modules is how packages export: not a loop
    edges = {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in edges.items()}
    state: dict[str, int] = defaultdict(int)  # 0 new, 1 on the path, 2 done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module], path[len(path) :] = 1, [module]
        for target in sorted(edges.get(module, ())):
            if state[target] == 1:
                return path[path.index(target) :] + [target]
            if state[target] == 0:
                loop = visit(target)
                if loop:
                    return loop
        state[module] = 2
        path.pop()
        return None

    for module in sorted(edges):
        if state[module] == 0:
            loop = visit(module)
            assert loop is None, "import loop: " + " -> ".join(loop)


def test_the_table_is_read():
    allowed = allowed_imports()
    assert allowed["data"] == {"data", "config", "files"}
    assert "modeling" in allowed["checkpoint"] and "predictor" not in allowed["modeling"]
