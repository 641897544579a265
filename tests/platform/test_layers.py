"""Layers, checked on the source: no library module imports a CLI module, and server/ and client/ never import
each other (what they share lives in fedgrad/)."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _offenders(sources: str, forbidden: str) -> list[str]:
    found = []
    for path in sorted((REPO / sources).rglob("*.py")):
        hits = sorted(name for name in _imports(path) if name == forbidden or name.startswith(forbidden + "."))
        if hits:
            found.append(f"{path.relative_to(REPO)}: {', '.join(hits)}")
    return found


def test_no_library_module_imports_the_cli():
    library = [f"{path.relative_to(REPO)}" for path in (REPO / "fedgrad").rglob("*.py")
               if (REPO / "fedgrad" / "cli") not in path.parents]
    offenders = [path for path in library if any(name == "fedgrad.cli" or name.startswith("fedgrad.cli.")
                                                 for name in _imports(REPO / path))]
    offenders += _offenders("server", "fedgrad.cli") + _offenders("client", "fedgrad.cli")
    assert not offenders


def test_server_and_client_do_not_import_each_other():
    assert not _offenders("server", "client") + _offenders("client", "server")
