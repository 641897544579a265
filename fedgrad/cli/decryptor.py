"""`fedgrad decryptor`: serve one threshold key share to the coordinator, verifying every request before decrypting.

    fedgrad decryptor --share FILE --key-set FILE --enrollment FILE --state-dir DIR
                      [--host 127.0.0.1] [--port 50061] [--port-file FILE] [--min-clients 3] [--cores N]
                      [--policy FILE | --run-id RUN] [--tls-dir DIR [--mtls]] [--insecure]

The share is read from FILE (written by `fedgrad keygen`; refused unless mode 600 and owned by this user), never
from the command line. The decryptor accepts the coordinator's Open / Contribute / Release calls and releases a
partial decryption only of the product of ciphertexts it verified itself: each signed by an enrolled client
(--enrollment, the operator's file) for this run, round and cohort, at least --min-clients of them (this
decryptor's own setting, not the coordinator's), and at most once per (run, round), remembered in --state-dir
across restarts (see fedgrad/decryptor/core.py for what each check defeats). --run-id pins it to one run.

--policy FILE (the operator's run policy, `fedgrad policy`) pins it to the policy's run, key set, task settings,
min_clients (the larger of the policy's and --min-clients) and the share of each announced cohort a release needs;
when the policy pins the coordinator's certificate, it serves only mutual TLS (--tls-dir DIR --mtls) and answers
only the peer presenting that certificate.

It prints one line when listening and writes the bound port to --port-file (atomically) so that a launcher can
find it with --port 0. SIGTERM or Ctrl-C stop it cleanly. Without --tls-dir the channel is plaintext, refused on
any address but loopback unless --insecure says so; with it the decryptor presents DIR/server.pem.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fedgrad.cli.common import add_listen_options, listen_security
from fedgrad.errors import ConfigError
from fedgrad.policy.document import DEFAULT_MIN_CLIENTS

if TYPE_CHECKING:
    from fedgrad.decryptor.core import Decryptor
    from fedgrad.transport.channel import ServerSecurity

DEFAULT_PORT = 50061


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("decryptor", help="serve one threshold key share (verifies before it decrypts)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--share", type=Path, required=True, metavar="FILE",
                        help="this decryptor's key share (mode 600)")
    parser.add_argument("--key-set", type=Path, required=True, metavar="FILE", help="the public keyset.json")
    parser.add_argument("--enrollment", type=Path, required=True, metavar="FILE",
                        help="the operator's enrollment file: client id -> Ed25519 public key")
    parser.add_argument("--state-dir", type=Path, required=True, metavar="DIR",
                        help="where releases are recorded (survives restarts; one per decryptor)")
    add_listen_options(parser, default_port=DEFAULT_PORT, callers="callers")
    parser.add_argument("--port-file", type=Path, metavar="FILE", help="write the bound port here (atomically)")
    parser.add_argument("--min-clients", type=int, default=DEFAULT_MIN_CLIENTS, metavar="N",
                        help="fewest distinct enrolled signers in a released aggregate "
                             f"(default: {DEFAULT_MIN_CLIENTS})")
    parser.add_argument("--cores", type=int, metavar="N", help="cores for partial decryption (default: all)")
    parser.add_argument("--run-id", metavar="RUN", help="accept this run id only")
    parser.add_argument("--policy", type=Path, metavar="FILE",
                        help="the operator's run policy: its run, key set, min_clients and cohort fraction")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from fedgrad.crypto.identity import Enrollment
    from fedgrad.crypto.threshold import KeySet, read_share
    from fedgrad.decryptor.core import Decryptor

    security = listen_security(args)
    if args.cores is not None and args.cores < 1:
        raise ConfigError(f"--cores must be at least 1, got {args.cores}")
    share = read_share(args.share)
    keys = KeySet.load(args.key_set)
    enrollment = Enrollment.load(args.enrollment)
    run_id, min_clients, min_fraction, settings, coordinator_cert = args.run_id, args.min_clients, 0.0, None, None
    if args.policy is not None:
        from fedgrad.policy import RunPolicy

        policy = RunPolicy.load(args.policy)
        policy.check_key_set(keys)
        if policy.coordinator_cert and not (args.tls_dir and args.mtls):
            raise ConfigError("the run policy pins the coordinator's certificate: serve mutual TLS "
                              "(--tls-dir DIR --mtls)")
        coordinator_cert = policy.coordinator_cert or None
        if run_id is not None and run_id != policy.run:
            raise ConfigError(f"--run-id {run_id!r} is not the run {policy.run!r} that --policy pins")
        run_id, min_clients, min_fraction = policy.run, max(min_clients, policy.min_clients), policy.min_fraction
        settings = policy.task_settings().settings_digest()
    args.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    decryptor = Decryptor(share, keys, enrollment, min_clients=min_clients, state_dir=args.state_dir,
                          cores=args.cores, run_id=run_id, min_fraction=min_fraction, settings_digest=settings)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("fedgrad")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        asyncio.run(_serve(decryptor, args, security, coordinator_cert))
    finally:
        decryptor.close()
        logger.removeHandler(handler)
    return 0


async def _serve(decryptor: Decryptor, args: argparse.Namespace, security: ServerSecurity | None,
                 coordinator_cert: str | None) -> None:
    from fedgrad.decryptor.service import start_decryptor_server
    from fedgrad.files import write_atomic

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server, port = await start_decryptor_server(decryptor, args.host, args.port, security,
                                                coordinator_cert=coordinator_cert)
    try:
        if args.port_file is not None:
            write_atomic(args.port_file, f"{port}\n")
        keys = decryptor.key_set
        print(f"decryptor {decryptor.index} of {keys.parties} (threshold {keys.threshold}) listening on "
              f"{args.host}:{port} ({'TLS' if security else 'plaintext'}), min_clients={decryptor.min_clients}, "
              f"state in {args.state_dir}", flush=True)
        await stop.wait()
        print(f"decryptor {decryptor.index}: stopping", flush=True)
    finally:
        await server.stop(1.0)
