"""Experiments ask a privacy mode, never its name: outside ``fedgrad/modes/`` no code compares anything with a
string literal that names a registered mode (or a ``dp``/``paillier`` spelling of one), so that a new mode is its
module, its tests and one registry line (``fedgrad.modes.registry``)."""
import ast
from pathlib import Path

from fedgrad.modes.registry import MODE_NAMES

REPO = Path(__file__).resolve().parents[2]
#: The library: what users run. Tests name modes freely (they pick the mode under test).
SOURCES = ("fedgrad", "server", "client")
#: The modes themselves, and ``fedgrad.crypto``, whose scheme names (``SecureAggConfig.mode``: "paillier",
#: "paillier-naive") are its own vocabulary, below the modes, that two modes happen to share.
EXEMPT = (REPO / "fedgrad" / "modes", REPO / "fedgrad" / "crypto")


def _mode_names(node: ast.AST) -> list[str]:
    """The mode-name literals ``node`` is, or, for a tuple, list or set display, holds (``mode in ("none", "dp")``)."""
    items = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return [item.value for item in items if isinstance(item, ast.Constant) and isinstance(item.value, str)
            and (item.value in MODE_NAMES or item.value.startswith(("dp", "paillier")))]


#: Mode names that are also ordinary words (``attack.kind == "none"``): flagged only when the other side of the
#: comparison mentions a mode or the privacy settings.
COMMON_WORDS = frozenset({"none"})


def _about_privacy(nodes: list[ast.expr]) -> bool:
    return any(word in ast.unparse(node) for node in nodes for word in ("mode", "privacy"))


def mode_name_comparisons(source: str) -> list[tuple[int, str]]:
    """(line, literal) of every comparison (``==``, ``!=``, ``in``, ``not in``, ``match`` cases) between anything
    and a mode-name literal in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for operand in operands:
                others = [other for other in operands if other is not operand]
                found += [(node.lineno, name) for name in _mode_names(operand)
                          if name not in COMMON_WORDS or _about_privacy(others)]
        elif isinstance(node, ast.Match):
            for case in node.cases:
                for pattern in ast.walk(case.pattern):
                    if isinstance(pattern, ast.MatchValue):
                        found += [(pattern.lineno, name) for name in _mode_names(pattern.value)
                                  if name not in COMMON_WORDS or _about_privacy([node.subject])]
    return found


def test_the_check_sees_every_kind_of_comparison():
    source = '''
if mode == "paillier": pass
if "dp" != mode: pass
if mode in ("none", "x"): pass
if mode not in {"paillier-trusted"}: pass
if placement == "distributed": pass
match mode:
    case "paillier+dp": pass
    case "none" | "other": pass
if attack.kind == "none": pass
if scenario.privacy.mode == "none": pass
'''
    assert sorted(mode_name_comparisons(source)) == [(2, "paillier"), (3, "dp"), (4, "none"), (5, "paillier-trusted"),
                                             (8, "paillier+dp"), (9, "none"), (11, "none")]


def test_no_mode_name_is_compared_outside_the_modes():
    offenders = []
    for folder in SOURCES:
        for path in sorted((REPO / folder).rglob("*.py")):
            if any(exempt in path.parents for exempt in EXEMPT):
                continue
            offenders += [f"{path.relative_to(REPO)}:{line}: {literal!r}"
                          for line, literal in mode_name_comparisons(path.read_text(encoding="utf-8"))]
    assert not offenders, "ask the mode (fedgrad.modes.resolve), not its name:\n" + "\n".join(offenders)
