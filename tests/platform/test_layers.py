"""Layers, checked on the source: ARCHITECTURE.md's layer order for every import of every module, no import cycle
between layers, no library module importing a CLI module, server/ and client/ never importing each other (what they
share lives in fedgrad/), and protobuf and gRPC only at the wire's edge."""
import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The nodes under ``if TYPE_CHECKING:``: imports for annotations, which load nothing at run time."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            guarded.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return guarded


def _imports(path: Path, runtime_only: bool = False) -> set[str]:
    """Every module ``path`` imports, by absolute name (``from a import b`` gives ``a`` and ``a.b``)."""
    names: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_only(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module != "fedgrad":  # ``from fedgrad import nn`` imports the engine's submodule, not the root
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


# ---- ARCHITECTURE.md's layer order -----------------------------------------------------------------------------

_UNIT = re.compile(r"fedgrad(\.\w+)?|server/|client/")

#: Imports against the layer order: (importing layer, imported module) -> why it is allowed.
LAYER_EXCEPTIONS = {
    ("fedgrad", "fedgrad.api"):
        "the package root names fedgrad.run, compare and baseline for type checkers only (under TYPE_CHECKING); at "
        "run time they are imported on first use (PEP 562 __getattr__), so `import fedgrad` loads the engine alone",
    ("fedgrad.scenario", "fedgrad.modes.registry"):
        "the schema checks privacy.mode against the modes' names; the registry is a table of names that imports "
        "nothing, so no mode is loaded (the typed settings of issue 20 give each mode its own table)",
}
#: Layers that import each other at run time -> why.
CYCLE_EXCEPTIONS = {
    frozenset({"fedgrad.tensor", "fedgrad.ops"}):
        "one engine in two files: a Tensor's operators call the ops, and every op builds Tensors",
}


def _layers() -> dict[str, int]:
    """Each layer's line in ARCHITECTURE.md's diagram, 0 at the top: the names that open each line."""
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    diagram = text.split("```\n", 2)[1]
    layers: dict[str, int] = {}
    for depth, line in enumerate(diagram.strip().splitlines()):
        for token in line.split():
            if not _UNIT.fullmatch(token):
                break
            layers[token] = depth
    return layers


def _layer_of_file(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    if parts[0] in ("server", "client"):
        return parts[0] + "/"
    return "fedgrad" if parts == ("fedgrad", "__init__") else f"fedgrad.{parts[1]}"


def _layer_of_import(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] in ("server", "client"):
        return parts[0] + "/"
    if parts[0] != "fedgrad":
        return None  # the standard library or a third-party package
    return "fedgrad" if len(parts) == 1 else f"fedgrad.{parts[1]}"


def _library() -> list[Path]:
    return sorted(path for root in ("fedgrad", "server", "client") for path in (REPO / root).rglob("*.py"))


def _excepted(layer: str, name: str) -> bool:
    return any(layer == importer and (name == module or name.startswith(module + "."))
               for importer, module in LAYER_EXCEPTIONS)


def test_the_diagram_places_every_layer_of_the_library():
    layers = _layers()
    assert {"fedgrad.cli", "server/", "fedgrad.protocol", "fedgrad.tensor", "fedgrad.errors"} <= set(layers)
    assert sorted({_layer_of_file(path) for path in _library()} - set(layers)) == []


def test_every_import_points_down_architecture_md_s_layers():
    layers = _layers()
    upward = []
    for path in _library():
        layer = _layer_of_file(path)
        for name in sorted(_imports(path)):
            target = _layer_of_import(name)
            if target is not None and layers[target] < layers[layer] and not _excepted(layer, name):
                upward.append(f"{path.relative_to(REPO)} ({layer}, line {layers[layer]}) imports {name} "
                              f"(line {layers[target]})")
    assert upward == []


def test_the_layer_exceptions_are_still_needed():
    """An exception nobody needs any more is removed, not kept as a door."""
    layers = _layers()
    used = {(layer, module) for path in _library() for layer in [_layer_of_file(path)] for name in _imports(path)
            for importer, module in LAYER_EXCEPTIONS
            if layer == importer and (name == module or name.startswith(module + "."))
            and layers[_layer_of_import(name) or layer] < layers[layer]}
    assert sorted(set(LAYER_EXCEPTIONS) - used) == []


def _runtime_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in _library():
        layer = _layer_of_file(path)
        for name in _imports(path, runtime_only=True):
            target = _layer_of_import(name)
            if target is not None and target != layer and not _excepted(layer, name):
                edges.setdefault(layer, set()).add(target)
    return edges


def _reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in edges.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_two_layers_import_each_other_at_run_time():
    edges = _runtime_edges()
    reach = {layer: _reachable(edges, layer) for layer in edges}
    cycles = {frozenset({a} | {b for b in reach[a] if a in reach.get(b, ())}) for a in reach if a in reach[a]}
    assert sorted(sorted(cycle) for cycle in cycles - set(CYCLE_EXCEPTIONS)) == []
    assert set(CYCLE_EXCEPTIONS) <= cycles  # an exception nobody needs any more is removed
