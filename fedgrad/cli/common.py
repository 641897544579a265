"""What several commands share: the run-source and ``--set`` options, log routing above the progress bar, and
the printed table of rounds."""
from __future__ import annotations

import argparse
import ipaddress
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from fedgrad.errors import ConfigError
from fedgrad.results import METRIC_KEYS, format_percent
from fedgrad.results.schema import RoundRecord, RunSummary, Scores
from fedgrad.transport.channel import ServerSecurity


def add_run_source(parser: argparse.ArgumentParser) -> None:
    """SCENARIO.toml for a new run, or --resume RUN_DIR for an interrupted one (shared with simulate)."""
    parser.add_argument("scenario", type=Path, nargs="?", help="scenario TOML file (see scenarios/)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue an interrupted run from its last checkpoint instead of starting one")
    add_set_option(parser)


def add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a scenario value, e.g. --set federation.rounds=3 (repeatable)")


@contextmanager
def logs_above_progress(level: int) -> Iterator[None]:
    """Route fedgrad's log records through tqdm so they print above the bar instead of through it."""

    class TqdmHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(self.format(record), file=sys.stderr)

    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("fedgrad")
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def print_results(name: str, records: Sequence[RoundRecord], summary: RunSummary) -> None:
    """The per-round table of the run ``name`` and the final line, on stdout."""
    columns = ("round", *METRIC_KEYS, "clients", "time", "up", "down")
    rows = []
    for record in records:
        rows.append((
            str(record.round),
            *(_number(getattr(record, key)) if key == "loss" else format_percent(getattr(record, key))
              for key in METRIC_KEYS),
            f"{record.clients_used}/{record.clients_selected}",
            f"{record.time_s.total:.3f}s",
            _size(record.moved.up),
            _size(record.moved.down),
        ))
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(columns)]
    print("  ".join(column.rjust(width) for column, width in zip(columns, widths, strict=True)))
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    final, initial = summary.final, summary.initial or Scores()
    rounds = max(summary.rounds, 1)
    print(f"\n{name}: final accuracy {format_percent(final.accuracy)} (initial "
          f"{format_percent(initial.accuracy)}), F1 {_number(final.f1)}, mean round "
          f"{summary.time_s.total / rounds:.3f}s, {_size(summary.moved.up / rounds)} up and "
          f"{_size(summary.moved.down / rounds)} down per round")
    print(f"results: {summary.run_dir}")


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _size(nbytes: float) -> str:
    if nbytes < 1024:
        return f"{nbytes:.0f} B"
    if nbytes < 1024**2:
        return f"{nbytes / 1024:.1f} KiB"
    return f"{nbytes / 1024**2:.1f} MiB"


def add_listen_options(parser: argparse.ArgumentParser, *, default_port: int, callers: str) -> None:
    """``--host``, ``--port``, ``--tls-dir``, ``--mtls`` and ``--insecure`` for a command that serves gRPC;
    ``callers`` names who connects (for the help text)."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1; 0.0.0.0 accepts other machines)")
    parser.add_argument("--port", type=port_number, default=default_port,
                        help=f"port to listen on, 0 for any free one (default: {default_port})")
    parser.add_argument("--tls-dir", type=Path, metavar="DIR",
                        help="serve TLS with DIR/server.pem and DIR/server.key (made by fedgrad certs DIR)")
    parser.add_argument("--mtls", action="store_true",
                        help=f"mutual TLS: {callers} must present a certificate signed by DIR/ca.pem")
    parser.add_argument("--insecure", action="store_true",
                        help="allow a plaintext channel on a non-loopback address (trusted networks only)")


def listen_security(args: argparse.Namespace) -> ServerSecurity | None:
    """The TLS that :func:`add_listen_options` asked for; plaintext only on loopback unless ``--insecure``."""
    if args.mtls and args.tls_dir is None:
        raise ConfigError("--mtls needs --tls-dir DIR (the federation's certificates)")
    if args.tls_dir is None and not args.insecure and not is_loopback(args.host):
        raise ConfigError(f"--host {args.host}: refusing to serve other machines over plaintext; pass --tls-dir DIR "
                          "(see fedgrad certs) or, on a trusted network, --insecure")
    return ServerSecurity.from_dir(args.tls_dir, mutual=args.mtls) if args.tls_dir else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def port_number(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in 0-65535, got {text!r}")
    return int(text)
