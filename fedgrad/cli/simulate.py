"""`fedgrad simulate`: a whole federation on this machine, over real gRPC.

    fedgrad simulate SCENARIO.toml [--set section.key=value ...] [--insecure | --mtls]
    fedgrad simulate --resume RUN_DIR
    fedgrad simulate SCENARIO.toml --launcher ray [--ray-address ADDR] [--ray-cpus N] [--host ADDRESS]

Builds the scenario's data into a fresh run directory, starts the coordinator in this process on a
free localhost port, and starts client OS processes (`fedgrad client`), each hosting a share of the
scenario's clients: federation.processes of them, or with 0 (the default) one per CPU core, at most
one per client and at most 16. Progress shows per round; at the end the table of rounds is printed and the run
directory holds config.toml, metrics.jsonl, summary.json, report.md, and logs/ with each client
process's log. Every client process is stopped on exit, on error and on Ctrl-C, and exits by itself
if this process is killed.

The channel uses TLS with a CA made for the run (RUN_DIR/tls; --mtls adds client certificates), and
each client presents a run token read from RUN_DIR/auth/client-tokens.json (mode 600, never on a command
line); --insecure turns TLS off. The coordinator checkpoints after every round: if this process dies,
`fedgrad simulate --resume RUN_DIR` continues from the last completed round with new client processes
and ends with the same model an uninterrupted run would have.

--launcher ray runs the client workers as Ray tasks instead, --ray-cpus CPUs each (default 1, or the
share that lets every worker run at once), on the cluster at --ray-address or, without it, on a local Ray
cluster started for the run and shut down at its end (Ray comes with the `ray` extra; see
fedgrad/launchers/ray.py). With a cluster of several machines, --host must be an address of this machine that
the cluster's nodes can reach.

From Python, fedgrad.run(SCENARIO, section__key=value, ...) does the same and returns the run's records
and summary (fedgrad/api.py).
"""
from __future__ import annotations

import argparse
import logging

from fedgrad.api import LAUNCHERS, simulate_run
from fedgrad.cli.common import add_run_source, logs_above_progress, print_results


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("simulate", help="run a whole federation locally (coordinator + client processes)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_source(parser)
    security = parser.add_mutually_exclusive_group()
    security.add_argument("--insecure", action="store_true", help="plaintext gRPC instead of TLS")
    security.add_argument("--mtls", action="store_true", help="mutual TLS: client processes present certificates")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="local",
                        help="where client workers run: local OS processes (default) or tasks on a Ray cluster")
    parser.add_argument("--ray-address", metavar="ADDR", help="Ray cluster to use with --launcher ray: 'auto' or "
                                                               "HOST:PORT (default: a cluster Ray finds, else a "
                                                               "local one started for the run)")
    parser.add_argument("--ray-cpus", metavar="N", type=float, help="CPUs Ray reserves for each client worker with "
                                                                    "--launcher ray (default: 1, or less so that all "
                                                                    "of them run at once)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address the coordinator listens on and clients dial (default: 127.0.0.1)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    with logs_above_progress(logging.WARNING):
        result = simulate_run(args.scenario, resume=args.resume, overrides=args.overrides, launcher=args.launcher,
                              ray_address=args.ray_address, ray_cpus=args.ray_cpus, insecure=args.insecure,
                              mutual=args.mtls, host=args.host)
    print_results(result.scenario.name, result.records, result.summary)
    return 0
