"""The contract package is used by its public names only: no module outside ``footprint/contract/`` imports
an underscore name (or an underscore module) from it, the package's own modules import no underscore name
from each other (its private modules themselves aside), and nothing in the app, its tests or the benchmarks
goes through the old ``footprint.schema`` (kept for importers outside the app only)."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[2]
CONTRACT = APP / "src" / "footprint" / "contract"
SOURCES = [*sorted((APP / "src").rglob("*.py")), *sorted((APP / "tests").rglob("*.py")),
           *sorted((APP.parent / "benchmarks").glob("*.py"))]
PRIVATE_MODULES = {"_fastwire", "_fastinbound"}


def imports_from_contract(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` of every import from the contract (or the old ``footprint.schema``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.startswith(("footprint.contract", "footprint.schema")) or module == "footprint":
                out += [(module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names if a.name.startswith(("footprint.contract", "footprint.schema"))]
    return out


def private_uses(path: Path) -> list[str]:
    """What ``path`` imports from the contract that it may not."""
    bad = []
    inside = CONTRACT in path.parents
    for module, name in imports_from_contract(path):
        if module == "footprint" and name not in ("schema", "contract"):
            continue
        if module == "footprint.schema" or (module == "footprint" and name == "schema"):
            if path.name != "schema.py":
                bad.append(f"{path}: imports footprint.schema (import footprint.contract)")
            continue
        private = [p for p in (*module.split("."), *([name] if name else [])) if p.startswith("_") and p != "__all__"]
        if private and not (inside and set(private) <= PRIVATE_MODULES and path.stem not in PRIVATE_MODULES):
            bad.append(f"{path}: from {module} import {name}")
    return bad


def test_no_module_outside_the_contract_uses_its_private_names() -> None:
    assert [bad for path in SOURCES for bad in private_uses(path)] == []


def test_the_check_finds_a_private_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from footprint.contract.values import _child\nfrom footprint.contract._fastwire import x\n"
                      "from footprint.contract import dumps\nfrom footprint.schema import dumps\n")
    assert [b.split(": ", 1)[1] for b in private_uses(sample)] == [
        "from footprint.contract.values import _child", "from footprint.contract._fastwire import x",
        "imports footprint.schema (import footprint.contract)"]
    inner = CONTRACT / "_fastwire.py"  # a private module itself imports public names only
    assert private_uses(inner) == []
