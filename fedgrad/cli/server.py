"""`fedgrad server`: coordinate a federated run whose clients connect over the network.

    fedgrad server SCENARIO.toml [--host 127.0.0.1] [--port 50051] [--set section.key=value ...]

The server builds the scenario's dataset into a fresh run directory, RUN_DIR/data/ (vocab.json,
test.npz and one shard-K.npz per client), prints that path, and waits for the clients. Start each
client, in another terminal or on another machine, with

    fedgrad client --server HOST:PORT --shard-dir RUN_DIR/data --client-id K

A client on another machine needs only its own shard file: copy RUN_DIR/data/shard-K.npz into a
directory there and pass that directory as --shard-dir. Listening on other machines' behalf takes
--host 0.0.0.0 (the channel is not encrypted or authenticated yet: use a trusted network).
When the last round is done the clients are told to exit and the results are in RUN_DIR.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm import tqdm

from fedgrad.results import METRIC_KEYS
from fedgrad.scenario import load_scenario
from server.experiment import PreparedRun, build_coordinator, prepare_run
from server.service import start_server

DEFAULT_PORT = 50051


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("server", help="run the coordinator of a federation (clients connect to it)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", type=Path, help="scenario TOML file (see scenarios/)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1; 0.0.0.0 accepts other machines)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT,
                        help=f"port to listen on, 0 for any free one (default: {DEFAULT_PORT})")
    add_set_option(parser)
    parser.set_defaults(func=run)
    return parser


def add_set_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a scenario value, e.g. --set federation.rounds=3 (repeatable)")


def run(args: argparse.Namespace) -> int:
    prepared = prepare_run(load_scenario(args.scenario, args.overrides))
    with logs_above_progress(logging.INFO):
        summary = asyncio.run(_serve(prepared, args.host, args.port))
    print_results(prepared, summary)
    return 0


async def _serve(prepared: PreparedRun, host: str, port: int) -> dict[str, Any]:
    with RoundProgress(prepared) as progress:
        coordinator = build_coordinator(prepared, progress.on_round)
        server, bound = await start_server(coordinator, host, port)
        try:
            progress.write(f"run directory: {prepared.writer.run_dir}\n"
                           f"listening on {host}:{bound}; start each client K with\n"
                           f"  fedgrad client --server {host}:{bound} --shard-dir {prepared.data_dir.resolve()} "
                           f"--client-id K")
            extras = await coordinator.run()
        finally:
            await server.stop(grace=1.0)
    return prepared.writer.finish(extras)


class RoundProgress:
    """Records each finished round to the run directory and advances a progress bar over rounds."""

    def __init__(self, prepared: PreparedRun) -> None:
        self._writer = prepared.writer
        self._bar = tqdm(total=prepared.scenario.federation.rounds, desc=prepared.scenario.name, unit="round",
                         file=sys.stderr, dynamic_ncols=True)

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
