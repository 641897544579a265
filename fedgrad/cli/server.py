"""`fedgrad server`: coordinate a federated run whose clients connect over the network.

    fedgrad server SCENARIO.toml [--host 127.0.0.1] [--port 50051] [--tls-dir DIR [--mtls]] [--set k=v ...]
    fedgrad server --resume RUN_DIR [--host ...] [--port ...] [--tls-dir DIR [--mtls]]

The server builds the scenario's dataset into a fresh run directory, RUN_DIR/data/ (vocab.json,
test.npz and one shard-K.npz per client), issues one run token per client into
RUN_DIR/auth/client-tokens.json (mode 600), prints both paths, and waits for the clients. Start each
client, in another terminal or on another machine, with

    fedgrad client --server HOST:PORT --shard-dir RUN_DIR/data --client-id K \\
                   --token-file RUN_DIR/auth/client-tokens.json [--tls-dir DIR]

A client on another machine needs its shard (copied from RUN_DIR/data, or rebuilt there with
`fedgrad data split`), its token and, with TLS, the federation's ca.pem (docs/multi-machine.md).

Security. --tls-dir DIR (made by `fedgrad certs DIR --hosts NAME`) serves TLS with DIR/server.pem;
--mtls also requires every client to present a certificate of the same CA. Without --tls-dir the
channel is plaintext, which is refused on any address but loopback unless --insecure says so.
Every client must present its run token at join and on every call; `fedgrad tokens revoke RUN_DIR K`
shuts client K out of the running federation.

Crash safety. After every round the coordinator checkpoints its state into RUN_DIR/checkpoint/; if it
dies, `fedgrad server --resume RUN_DIR` (same port) carries on from the last completed round, the
clients reconnect on their own, and the run ends with the same model it would have had.
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fedgrad.errors import ConfigError
from fedgrad.results import METRIC_KEYS
from fedgrad.scenario import load_scenario
from fedgrad.transport.channel import ServerSecurity
from server.checkpoint import Checkpoint, Checkpoints, reopen_run
from server.coordinator import Coordinator
from server.experiment import PreparedRun, build_coordinator, client_ids, prepare_run
from server.registry import AUTH_DIR, CLIENT_TOKENS_FILE, RunTokens, issue_run_tokens, open_run_tokens
from server.service import start_server

DEFAULT_PORT = 50051
LOOPBACK_NAMES = ("localhost",)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("server", help="run the coordinator of a federation (clients connect to it)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_source(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1; 0.0.0.0 accepts other machines)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help=f"port to listen on, 0 for any free one (default: {DEFAULT_PORT})")
    parser.add_argument("--tls-dir", type=Path, metavar="DIR",
                        help="serve TLS with DIR/server.pem and DIR/server.key (made by fedgrad certs DIR)")
    parser.add_argument("--mtls", action="store_true",
                        help="mutual TLS: clients must present a certificate signed by DIR/ca.pem")
    parser.add_argument("--insecure", action="store_true",
                        help="allow a plaintext channel on a non-loopback address (trusted networks only)")
    parser.set_defaults(func=run)
    return parser


def add_run_source(parser: argparse.ArgumentParser) -> None:
    """SCENARIO.toml for a new run, or --resume RUN_DIR for an interrupted one (shared with simulate)."""
    parser.add_argument("scenario", type=Path, nargs="?", help="scenario TOML file (see scenarios/)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="continue an interrupted run from its last checkpoint instead of starting one")
    add_set_option(parser)


def add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a scenario value, e.g. --set federation.rounds=3 (repeatable)")


@dataclass
class OpenedRun:
    """A run directory ready to serve: new (prepared now) or resumed (checkpoint restored)."""

    prepared: PreparedRun
    tokens: RunTokens
    checkpoint: Checkpoint | None

    @property
    def token_file(self) -> Path:
        return self.prepared.writer.run_dir / AUTH_DIR / CLIENT_TOKENS_FILE

    def coordinator(self, progress: RoundProgress) -> Coordinator:
        """The coordinator, restored from the checkpoint if any, writing a checkpoint after every round."""
        checkpoints = Checkpoints(self.prepared.writer.run_dir)

        def on_round(record: dict[str, Any]) -> None:
            progress.on_round(record)
            checkpoints.save(coordinator.state, self.prepared.writer.records)

        coordinator = build_coordinator(self.prepared, on_round, self.tokens)
        if self.checkpoint is not None:
            self.checkpoint.restore(coordinator.state)
        return coordinator


def open_run(args: argparse.Namespace) -> OpenedRun:
    """The run ``args`` name: a fresh one from ``args.scenario`` or the one ``args.resume`` points to."""
    if (args.scenario is None) == (args.resume is None):
        raise ConfigError("give a scenario file to start a run, or --resume RUN_DIR to continue one (not both)")
    if args.resume is not None:
        if args.overrides:
            raise ConfigError("--set cannot change a resumed run (its scenario is RUN_DIR/config.toml)")
        prepared, checkpoint = reopen_run(args.resume)
        return OpenedRun(prepared, open_run_tokens(prepared.writer.run_dir), checkpoint)
    prepared = prepare_run(load_scenario(args.scenario, args.overrides))
    return OpenedRun(prepared, issue_run_tokens(prepared.writer.run_dir, client_ids(prepared.scenario)), None)


def run(args: argparse.Namespace) -> int:
    if args.mtls and args.tls_dir is None:
        raise ConfigError("--mtls needs --tls-dir DIR (the federation's certificates)")
    if args.tls_dir is None and not args.insecure and not _is_loopback(args.host):
        raise ConfigError(f"--host {args.host}: refusing to serve other machines over plaintext; pass --tls-dir DIR "
                          "(see fedgrad certs) or, on a trusted network, --insecure")
    security = ServerSecurity.from_dir(args.tls_dir, mutual=args.mtls) if args.tls_dir else None
    opened = open_run(args)
    with logs_above_progress(logging.INFO):
        summary = asyncio.run(_serve(opened, args.host, args.port, security, args.tls_dir))
    print_results(opened.prepared, summary)
    return 0


async def _serve(opened: OpenedRun, host: str, port: int, security: ServerSecurity | None,
                 tls_dir: Path | None) -> dict[str, Any]:
    prepared = opened.prepared
    with RoundProgress(prepared) as progress:
        coordinator = opened.coordinator(progress)
        server, bound = await start_server(coordinator, host, port, security)
        try:
            tls = f" --tls-dir {tls_dir.resolve()}" if tls_dir else ""
            dial = socket.gethostname() if host in ("0.0.0.0", "::") else host  # what other machines dial
            progress.write(f"run directory: {prepared.writer.run_dir}\n"
                           f"listening on {host}:{bound} ({_describe(security)}); start each client K with\n"
                           f"  fedgrad client --server {dial}:{bound} --shard-dir {prepared.data_dir.resolve()} "
                           f"--client-id K --token-file {opened.token_file.resolve()}{tls}")
            if opened.checkpoint is not None:
                progress.write(f"resuming after round {opened.checkpoint.completed_rounds} "
                               f"({opened.checkpoint.path.name})")
            extras = await coordinator.run()
        finally:
            await server.stop(grace=1.0)
    return prepared.writer.finish(extras)


class RoundProgress:
    """Records each finished round to the run directory and advances a progress bar over rounds."""

    def __init__(self, prepared: PreparedRun) -> None:
        self._writer = prepared.writer
        self._bar = tqdm(total=prepared.scenario.federation.rounds, initial=len(prepared.writer.records),
                         desc=prepared.scenario.name, unit="round", file=sys.stderr, dynamic_ncols=True)

    def __enter__(self) -> RoundProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._bar.close()

    def on_round(self, record: dict[str, Any]) -> None:
        self._writer.log_round(record)
        self._bar.set_postfix(acc=f"{100 * record['accuracy']:.2f}%", round=f"{record['time_s']['total']:.2f}s",
                              refresh=False)
        self._bar.update(1)

    def write(self, text: str) -> None:
        self._bar.write(text, file=sys.stderr)


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


def print_results(prepared: PreparedRun, summary: dict[str, Any]) -> None:
    """The per-round table and the final line, on stdout."""
    columns = ("round", *METRIC_KEYS, "clients", "time", "up", "down")
    rows = []
    for record in prepared.writer.records:
        rows.append((
            str(record["round"]),
            *(f"{record[key]:.4f}" if key == "loss" else f"{100 * record[key]:.2f}%" for key in METRIC_KEYS),
            f"{record['clients_used']}/{record['clients_selected']}",
            f"{record['time_s']['total']:.3f}s",
            _size(record["bytes"]["up"]),
            _size(record["bytes"]["down"]),
        ))
    widths = [max(len(column), *(len(row[i]) for row in rows)) for i, column in enumerate(columns)]
    print("  ".join(column.rjust(width) for column, width in zip(columns, widths)))
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))
    final, initial = summary["final"], summary["initial"]
    rounds = max(summary["rounds"], 1)
    print(f"\n{prepared.scenario.name}: final accuracy {100 * final['accuracy']:.2f}% (initial "
          f"{100 * initial['accuracy']:.2f}%), F1 {final['f1']:.4f}, mean round "
          f"{summary['time_s']['total'] / rounds:.3f}s, {_size(summary['bytes']['up'] / rounds)} up and "
          f"{_size(summary['bytes']['down'] / rounds)} down per round")
    print(f"results: {summary['run_dir']}")


def _describe(security: ServerSecurity | None) -> str:
    if security is None:
        return "plaintext"
    return "mutual TLS" if security.mutual else "TLS"


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in 0-65535, got {text!r}")
    return int(text)


def _size(nbytes: float) -> str:
    if nbytes < 1024:
        return f"{nbytes:.0f} B"
    if nbytes < 1024**2:
        return f"{nbytes / 1024:.1f} KiB"
    return f"{nbytes / 1024**2:.1f} MiB"
