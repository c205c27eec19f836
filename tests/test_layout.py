"""The layout promises of README's code map: grpc and protobuf stay in transport/ (and app.py's
wiring), files stay small, every package folder is packaged."""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "server"


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_only_transport_and_the_wiring_import_grpc_or_the_wire_contract() -> None:
    wired = {SERVER / "app.py"} | set((SERVER / "transport").rglob("*.py"))
    leaks = {str(p.relative_to(ROOT)): sorted(n for n in imported(p) if n == "grpc" or n.startswith(("grpc.", "poolscore.v1")))
             for p in SERVER.rglob("*.py") if p not in wired}
    assert {p: n for p, n in leaks.items() if n} == {}


def test_no_module_outside_backends_asks_which_backend_it_has() -> None:
    outside = [p for p in SERVER.rglob("*.py") if "backends" not in p.parts]
    assert [str(p) for p in outside if 'name == "torch"' in p.read_text() or "name != \"torch\"" in p.read_text()] == []


def test_files_stay_small() -> None:
    big = {str(p.relative_to(ROOT)): n for p in [*SERVER.rglob("*.py"), *(ROOT / "client").rglob("*.py")]
           if (n := len(p.read_text().splitlines())) > 300}
    assert big == {}


def test_every_package_folder_is_packaged() -> None:
    packages = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"poolscore." + ".".join(p.parent.relative_to(ROOT).parts) for p in SERVER.rglob("__init__.py")}
    found |= {"poolscore.client"}
    assert found <= packages, sorted(found - packages)


def test_every_source_file_beside_the_code_ships_in_the_wheel() -> None:
    """A kernel source the server builds at run time (backends/native/kernels.cpp) must be package data."""
    from fnmatch import fnmatch
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    sources = [p for p in SERVER.rglob("*") if p.suffix in (".cpp", ".c", ".h")]
    assert sources, "server/backends/native/kernels.cpp"
    for p in sources:
        package = "poolscore." + ".".join(p.parent.relative_to(ROOT).parts)
        assert any(fnmatch(p.name, g) for g in data.get(package, [])), p
