"""`fedgrad identity` (client side) and `fedgrad enroll` (operator side): the client identities that
`privacy.mode = "paillier"` decryptors verify.

    fedgrad identity DIR --client-id K [K ...]     make (or reuse) DIR/K.key (mode 600) and publish DIR/K.pub
    fedgrad enroll PUB_FILE [...] --out FILE      the operator's enrollment of those public keys

Each client keeps its .key; only .pub files travel to the operator. Decryptors load the enrollment
(`fedgrad decryptor --enrollment FILE`), clients load it too (`fedgrad client --enrollment FILE`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from client.identity import enroll, ensure_identities


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("identity", help="make this machine's clients' signing identities",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, metavar="DIR", help="where the clients' .key and .pub files live")
    parser.add_argument("--client-id", dest="client_ids", required=True, nargs="+", action="extend",
                        metavar="K", help="client(s) to make an identity for")
    parser.set_defaults(func=run_identity)
    enroll_parser = subparsers.add_parser("enroll", help="enroll clients' public keys (the operator's step)",
                                          description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    enroll_parser.add_argument("public_files", type=Path, nargs="+", metavar="PUB_FILE",
                               help="clients' published K.pub files")
    enroll_parser.add_argument("--out", type=Path, required=True, metavar="FILE", help="the enrollment to write")
    enroll_parser.set_defaults(func=run_enroll)
    return parser


def run_identity(args: argparse.Namespace) -> int:
    public = ensure_identities(args.dir, args.client_ids)
    print(f"{len(public)} client identit{'y' if len(public) == 1 else 'ies'} in {args.dir}; send the .pub files "
          "to the operator (fedgrad enroll)")
    return 0


def run_enroll(args: argparse.Namespace) -> int:
    enrollment = enroll(args.public_files)
    enrollment.save(args.out)
    print(f"enrolled {len(enrollment.clients)} client(s) in {args.out}")
    return 0
