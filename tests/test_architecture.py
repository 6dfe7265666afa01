"""The layer rules of docs/architecture.md, read from the imports with ``ast``.

- The core (``cappuccino_core``) never imports ``prefect``, ``flows`` or ``tasks``: it runs without
  an orchestrator. The command line (``cappuccino_cli``) and the flows wire it.
- Only ``tracking`` and ``registry`` import ``mlflow``; only the Alpaca adapters import ``alpaca``.
- The core's packages (and top-level modules) import each other without a cycle.

Every import counts: at module level, inside a function, or under ``TYPE_CHECKING``.
Each rule is also run on a planted violation, so a checker that finds nothing cannot pass.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO

CORE = "cappuccino_core"
ORCHESTRATION = frozenset({"prefect", "flows", "tasks", "cappuccino_cli"})
MLFLOW_HOMES = frozenset({"tracking", "registry"})
ALPACA_ADAPTERS = frozenset({"data/alpaca_source.py", "trading/alpaca_broker.py"})


@dataclass(frozen=True)
class Import:
    """One import statement of a core module: who imports what, where."""

    module: Path  # relative to the core package, e.g. ``arena/mirror.py``
    target: str  # the dotted name imported, e.g. ``mlflow.tracking``
    line: int

    @property
    def package(self) -> str:
        """The core package (or top-level module) the importing file belongs to."""
        return self.module.parts[0].removesuffix(".py")

    @property
    def top(self) -> str:
        return self.target.split(".")[0]

    def __str__(self) -> str:
        return f"{CORE}/{self.module.as_posix()}:{self.line} imports {self.target}"


def imports_of(core: Path) -> Iterator[Import]:
    """Every absolute import in every module under ``core``."""
    for path in sorted(core.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                yield Import(path.relative_to(core), name, node.lineno)


def orchestration_imports(core: Path) -> list[str]:
    return [str(i) for i in imports_of(core) if i.top in ORCHESTRATION]


def misplaced_mlflow_imports(core: Path) -> list[str]:
    return [str(i) for i in imports_of(core) if i.top == "mlflow" and i.package not in MLFLOW_HOMES]


def misplaced_alpaca_imports(core: Path) -> list[str]:
    return [str(i) for i in imports_of(core) if i.top == "alpaca" and i.module.as_posix() not in ALPACA_ADAPTERS]


def package_cycles(core: Path) -> list[list[str]]:
    """The cycles among the core's packages: strongly connected components of more than one."""
    graph: dict[str, set[str]] = {}
    for i in imports_of(core):
        parts = i.target.split(".")
        if parts[0] == CORE and len(parts) > 1 and parts[1] != i.package:
            graph.setdefault(i.package, set()).add(parts[1])
    return [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]


def cycle_witnesses(core: Path, cycle: list[str]) -> list[str]:
    """The import statements that close ``cycle`` (for the failure message)."""
    members = set(cycle)
    return [str(i) for i in imports_of(core)
            if i.package in members and i.target.split(".")[0] == CORE and len(i.target.split(".")) > 1
            and i.target.split(".")[1] in members - {i.package}]


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


# --- the rules on the real tree -------------------------------------------------------------------

def test_the_core_never_imports_the_orchestration() -> None:
    assert orchestration_imports(REPO / CORE) == []


def test_only_tracking_and_registry_import_mlflow() -> None:
    assert misplaced_mlflow_imports(REPO / CORE) == []


def test_only_the_alpaca_adapters_import_alpaca() -> None:
    assert misplaced_alpaca_imports(REPO / CORE) == []


def test_the_core_packages_import_each_other_without_a_cycle() -> None:
    cycles = package_cycles(REPO / CORE)
    assert cycles == [], [cycle_witnesses(REPO / CORE, c) for c in cycles]


# --- the same rules catch planted violations ------------------------------------------------------

def _plant(root: Path, files: dict[str, str]) -> Path:
    core = root / CORE
    for name, text in files.items():
        path = core / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return core


def test_a_planted_prefect_import_inside_a_function_is_caught(tmp_path) -> None:
    core = _plant(tmp_path, {"arena/service.py": "def run():\n    from prefect import flow\n    return flow\n",
                             "cli.py": "import flows.pipeline\n"})
    assert orchestration_imports(core) == [f"{CORE}/arena/service.py:2 imports prefect", f"{CORE}/cli.py:1 imports flows.pipeline"]


def test_a_planted_mlflow_import_outside_tracking_is_caught_even_for_typing(tmp_path) -> None:
    core = _plant(tmp_path, {
        "operations/site.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mlflow.tracking import MlflowClient\n",
        "tracking/runs.py": "import mlflow\n",
    })
    assert misplaced_mlflow_imports(core) == [f"{CORE}/operations/site.py:3 imports mlflow.tracking"]


def test_a_planted_alpaca_import_outside_the_adapters_is_caught(tmp_path) -> None:
    core = _plant(tmp_path, {"trading/trader.py": "from alpaca.trading.client import TradingClient\n",
                             "trading/alpaca_broker.py": "import alpaca\n"})
    assert misplaced_alpaca_imports(core) == [f"{CORE}/trading/trader.py:1 imports alpaca.trading.client"]


def test_a_planted_cycle_between_packages_is_caught(tmp_path) -> None:
    core = _plant(tmp_path, {
        "env/portfolio_env.py": "from cappuccino_core.risk.layers import apply_risk\n",
        "risk/rules.py": "from cappuccino_core.accounting import Fills\n",
        "accounting.py": "from cappuccino_core.env.portfolio_env import PortfolioEnv\n",
        "data/store.py": "from cappuccino_core.accounting import Fills\n",
    })
    assert package_cycles(core) == [["accounting", "env", "risk"]]
    assert f"{CORE}/accounting.py:1 imports cappuccino_core.env.portfolio_env" in cycle_witnesses(core, ["accounting", "env", "risk"])
