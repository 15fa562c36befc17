"""The layout's rules, checked rather than hoped for: the five domain packages import neither each
other nor esus, and inside esus every import points down (the CLI composes the service, which
composes its parts, which use state, settings and the runtime; never the other way)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = ("bms_wrapper", "bacnet_server", "forecast", "shades", "demand_response")
#: esus's rooms, lowest first; a module may import its own room and the rooms below it.
ESUS_FLOORS = {"settings": 0, "runtime": 0, "state": 1, "parts": 2, "service": 3, "demo": 4, "cli": 5,
               "__main__": 6}


def imported_modules(path: Path) -> list[str]:
    """Every module a file imports, at the top or inside a function (absolute names)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", DOMAIN)
def test_a_domain_package_imports_no_other_package_of_ours(package: str) -> None:
    forbidden = {"esus", *DOMAIN} - {package}
    found = [f"{path.relative_to(ROOT)} imports {name}" for path in python_files(package)
             for name in imported_modules(path) if name.split(".")[0] in forbidden]
    assert not found, "\n".join(found)


def esus_room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "esus" and len(parts) > 1 and parts[1] in ESUS_FLOORS else None


def test_inside_esus_every_import_points_down() -> None:
    found = []
    for path in python_files("esus"):
        relative = path.relative_to(ROOT).with_suffix("")
        room = esus_room(".".join(relative.parts))
        if room is None:
            continue   # esus/__init__.py
        for name in imported_modules(path):
            target = esus_room(name)
            if target is not None and ESUS_FLOORS[target] > ESUS_FLOORS[room]:
                found.append(f"{path.relative_to(ROOT)} ({room}) imports {name} ({target}, a floor up)")
    assert not found, "\n".join(found)


def test_every_esus_module_has_a_room() -> None:
    loose = [p.name for p in (ROOT / "esus").glob("*.py") if p.stem not in ESUS_FLOORS and p.stem != "__init__"]
    rooms = [p.name for p in (ROOT / "esus").iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    assert not loose, f"modules outside the known rooms: {loose}"
    assert set(rooms) <= set(ESUS_FLOORS), f"unknown rooms: {set(rooms) - set(ESUS_FLOORS)}"


def test_the_rules_catch_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from esus.service import Service\n    import forecast.model\n")
    assert {"esus.service", "forecast.model"} <= set(imported_modules(bad))
