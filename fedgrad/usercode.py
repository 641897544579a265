"""User code named by a scenario: ``model.name`` or ``federation.strategy = "package.module:attribute"``.

A reference is a dotted module path, a colon and an attribute path (``spam_models:make_gru``,
``lab.models:Factory.create``). :func:`load_reference` imports the module — from ``code_dir`` (the
scenario file's folder unless the scenario's ``code_dir`` says otherwise) or from ``sys.path`` /
``PYTHONPATH`` — and returns the attribute. Anything that goes wrong is one :class:`ConfigError`
naming the scenario key, never a traceback.

Loading user code runs it: the scenario's author's code runs in the coordinator and in every client
that trusts it (``fedgrad client --trust-code REF``; ``simulate`` trusts its own scenario's references).
"""
from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass
from typing import Any

from fedgrad.errors import ConfigError

_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
#: ``package.module:attribute``; the attribute may itself be dotted (a class's static factory).
REFERENCE = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}(\.{_IDENTIFIER})*")


def is_reference(name: str) -> bool:
    """Whether a scenario value names user code rather than a built-in model or strategy."""
    return REFERENCE.fullmatch(name) is not None


def load_reference(reference: str, *, key: str, code_dir: str = "") -> Any:
    """The object ``reference`` names, importing its module from ``code_dir`` (put first on ``sys.path`` and
    left there, so that the module's own imports of its neighbours work) or from the existing ``sys.path``."""
    if not is_reference(reference):
        raise ConfigError(f"{key}: expected \"package.module:attribute\" (got {reference!r})")
    module_name, _, attribute = reference.partition(":")
    add_code_dir(code_dir)
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - user code may raise anything while importing
        where = f"{code_dir} or PYTHONPATH" if code_dir else "PYTHONPATH"
        raise ConfigError(f"{key}: cannot import {module_name!r} (from {where}): "
                          f"{type(error).__name__}: {error}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"{key}: {module_name!r} ({getattr(target, '__file__', '?')}) has no {attribute!r}")
        target = getattr(target, part)
    return target


def add_code_dir(code_dir: str) -> None:
    """Put ``code_dir`` first on ``sys.path`` (once; nothing for ``""``)."""
    if code_dir and code_dir not in sys.path:
        sys.path.insert(0, code_dir)


@dataclass(frozen=True)
class ClientCode:
    """What a simulation's client workers need to run the scenario's user model: the folder to import it from
    and the references they trust (none for the built-in models)."""

    code_dir: str = ""
    trusted: tuple[str, ...] = ()


NO_CLIENT_CODE = ClientCode()


def describe_failure(error: BaseException) -> str:
    """One line for an exception raised by user code: its type and the first line of its message."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
