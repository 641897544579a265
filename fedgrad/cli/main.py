"""Entry point of the `fedgrad` command.

Each command lives in its own module `fedgrad.cli.<name>` exposing
`add_parser(subparsers) -> argparse.ArgumentParser` whose parser sets `func=run(args) -> int`.
Modules are imported lazily-by-name so heavy imports stay out of unrelated commands.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from fedgrad.errors import FedgradError

COMMANDS: tuple[str, ...] = ("data", "server", "client", "simulate", "train", "certs", "compare", "report", "audit",
                             "tokens", "identity", "keygen", "policy", "decryptor")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of ``command`` alone: a client process imports only what its command
    needs (the audit's parser alone pulls in scipy and dp-accounting, some 70 MiB in each process)."""
    parser = argparse.ArgumentParser(prog="fedgrad", description="Federated learning on fedgrad's own autograd engine.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS if command not in COMMANDS else (command,):
        importlib.import_module(f"fedgrad.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FedgradError as exc:  # user-facing errors: one line, no traceback
        print(f"fedgrad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fedgrad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
