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


#: What only the wire's edge may import.
WIRE = ("grpc", "google.protobuf", "fedgrad.transport.fedgrad_pb2", "fedgrad.transport.fedgrad_pb2_grpc")
#: The code under the layer rules (tests are left out: they play hostile clients on the wire).
SOURCES = ("fedgrad", "server", "client", "benchmarks", "examples")


def _sources() -> list[Path]:
    return sorted(path for root in SOURCES for path in (REPO / root).rglob("*.py"))


def _edge_in_architecture() -> set[str]:
    """The files ARCHITECTURE.md's "The wire's edge" section lists (a folder ends with /)."""
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## The wire's edge", 1)[1].split("\n## ", 1)[0]
    return {line.split("`")[1] for line in section.splitlines() if line.startswith("- `")}


def _on_edge(path: str, edge: set[str]) -> bool:
    return path in edge or any(entry.endswith("/") and path.startswith(entry) for entry in edge)


def test_protobuf_and_grpc_are_imported_only_at_the_edge_architecture_md_lists():
    edge = _edge_in_architecture()
    importers = {str(path.relative_to(REPO)) for path in _sources()
                 if any(name == wire or name.startswith(wire + ".") for name in _imports(path) for wire in WIRE)}
    assert sorted(path for path in importers if not _on_edge(path, edge)) == []
    listed_files = {entry for entry in edge if not entry.endswith("/")}
    assert sorted(listed_files - importers) == []  # the list holds nothing that no longer needs the wire
