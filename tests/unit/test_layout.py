"""The layout holds: edges hold only HTTP, finance only reads, only config.py reads the environment."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "webhook_app"
# Modules that are HTTP edges (blueprints): the factory registers them, nothing else imports them.
EDGES = {"webhook_app.intake", "webhook_app.links", "webhook_app.health", "webhook_app.finance.views"}
WIRING = {"webhook_app", "webhook_app.wsgi", "webhook_app.cli"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts}
PAGES = {name for name in MODULES if name.startswith("webhook_app.providers.") and name.endswith(".pages")}


def test_nothing_below_the_http_edge_imports_a_blueprint_module():
    edges = EDGES | PAGES
    offenders = {
        name: sorted(_imports(path) & edges)
        for name, path in MODULES.items()
        if name not in WIRING and name not in edges and _imports(path) & edges
    }
    # A provider package's __init__ may hand its own pages to the factory (Provider.blueprints()).
    offenders = {
        name: [edge for edge in imported if not edge.startswith(name + ".")] for name, imported in offenders.items()
    }
    assert {name: imported for name, imported in offenders.items() if imported} == {}


def test_finance_only_reads_the_ledger():
    writers = {"webhook_app.ledger", "webhook_app.sql", "webhook_app.sql.insert_if_absent"}
    offenders = {name: sorted(_imports(path) & writers) for name, path in MODULES.items() if ".finance" in name}
    assert {name: found for name, found in offenders.items() if found} == {}


def test_only_config_reads_the_environment():
    readers = []
    for name, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        if name != "webhook_app.config" and ("os.environ" in source or "os.getenv" in source):
            readers.append(name)
    assert readers == []
