"""The domain core is plain Python: no module of cappuccino_core imports Prefect (flows and tasks do)."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "cappuccino_core"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):  # imports inside functions count too
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_core_module_imports_prefect() -> None:
    offenders = {str(path.relative_to(CORE.parent)): sorted(m for m in _imported_modules(path)
                                                             if m == "prefect" or m.startswith("prefect."))
                 for path in sorted(CORE.rglob("*.py"))}
    assert {path: mods for path, mods in offenders.items() if mods} == {}


def test_the_check_sees_an_import_inside_a_function(tmp_path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from prefect.artifacts import create_markdown_artifact\n")
    assert "prefect.artifacts" in _imported_modules(module)
