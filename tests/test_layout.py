"""The source layout in docs/GETTING_STARTED.md ("Source layout") is the import rule: every module of the package is listed in one group, and a
module imports (at any depth, lazily or not) only from its own group and the groups before it."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "robustreid"


def layout_groups() -> list[list[str]]:
    text = (ROOT / "docs" / "GETTING_STARTED.md").read_text()
    block = text.split("## Source layout", 1)[1].split("```", 2)[1]
    lines = [line for line in block.splitlines() if line.strip() and not line.strip().startswith("(")]
    src_lines = []
    for line in lines:
        if line.startswith("src/robustreid/"):
            src_lines.append(line[len("src/robustreid/"):])
        elif line.startswith(" ") and src_lines:
            src_lines.append(line)
        elif src_lines:
            break
    return [group.split() for group in " | ".join(src_lines).split("|")]


def top_level_unit(path: Path) -> str:
    """``synthetic/person.py`` -> ``synthetic/``; ``train.py`` -> ``train``."""
    rel = path.relative_to(PACKAGE)
    return f"{rel.parts[0]}/" if len(rel.parts) > 1 else rel.stem


def imported_units(path: Path) -> set[str]:
    """The package's top-level modules / subpackages that ``path`` imports (relative or absolute)."""
    tree = ast.parse(path.read_text())
    depth_of_file = len(path.relative_to(PACKAGE).parts) - 1  # 0 for a top-level module
    units = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: climb to the package root, then take the first part
                climb = node.level - 1
                if climb < depth_of_file:  # stays inside its own subpackage
                    continue
                parts = (node.module or "").split(".") if node.module else [a.name for a in node.names]
                names = [parts[0]] if node.module else parts
            elif node.module and node.module.startswith("robustreid."):
                names = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("robustreid.")]
        for name in names:
            if (PACKAGE / f"{name}.py").is_file():  # a module (zoo.py beside the zoo/ data folder)
                units.add(name)
            elif (PACKAGE / name / "__init__.py").is_file():
                units.add(f"{name}/")
    return units


def test_every_module_is_in_one_group_of_the_layout():
    groups = layout_groups()
    listed = [unit for group in groups for unit in group]
    assert len(listed) == len(set(listed)), "a module is listed twice"
    present = {top_level_unit(p) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE}
    assert present == set(listed)


def test_imports_flow_one_way():
    group_of = {unit: i for i, group in enumerate(layout_groups()) for unit in group}
    reaching_up = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue  # the top-level package re-exports (lazily) from everywhere
        own = top_level_unit(path)
        for unit in imported_units(path) - {own}:
            if group_of[unit] > group_of[own]:
                reaching_up.append(f"{path.relative_to(PACKAGE)} imports {unit}")
    assert not reaching_up


def test_the_checker_sees_lazy_relative_imports():
    # a hand-made case: the walker must find lazy (function-level) imports of both kinds
    path = PACKAGE / "train.py"
    assert {"evaluate", "swag", "model"} <= imported_units(path)
    assert re.search(r"^    from \.evaluate import", path.read_text(), re.M)  # train imports evaluate lazily
