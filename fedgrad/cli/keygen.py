"""`fedgrad keygen`: the dealer step of threshold Paillier, in a process of its own that exits when done.

    fedgrad keygen --parties K --threshold T --out DIR [--key-bits 2048] [--insecure-key-bits]

Writes DIR/keyset.json (public: the modulus n, k, t and the verification keys; give it to the coordinator, every
decryptor and every client) and DIR/decryptor-<i>/share.json for i = 1..K (secret: mode 600 in a mode-700
directory; move each to its own decryptor host and delete it here). Any T decryptors can decrypt together;
fewer learn nothing.

What the dealer is trusted for. It draws the safe primes p, q, so it could keep them and read every update of
every run under this key. It is trusted at key generation only: it writes nothing but n and the shares, and this
command exits right after, so the factorization dies with the process (Python cannot wipe memory sooner). Run it
on a machine you trust (ideally offline, by the operator, never by the coordinator), and generate a fresh key if
that machine is in doubt. A dealer-free distributed key generation is not implemented.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from fedgrad.errors import ConfigError

DEFAULT_KEY_BITS = 2048


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("keygen", help="deal a t-of-k threshold Paillier key: a public key set and "
                                                  "one share per decryptor (trusted dealer)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parties", type=int, required=True, metavar="K", help="number of decryptors (shares)")
    parser.add_argument("--threshold", type=int, required=True, metavar="T",
                        help="decryptors needed to decrypt (1 <= T <= K; T = 1 lets any one decrypt alone)")
    parser.add_argument("--key-bits", type=int, default=DEFAULT_KEY_BITS,
                        help=f"modulus size: 2048 or 3072 (default: {DEFAULT_KEY_BITS})")
    parser.add_argument("--insecure-key-bits", action="store_true",
                        help="allow a shorter key (tests and demos only: it can be factored)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="directory for keyset.json and decryptor-<i>/share.json (must not hold a key yet)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from fedgrad.crypto.threshold import deal, key_set, write_share
    from fedgrad.decryptor.core import require_majority

    out: Path = args.out
    keyset_path = out / "keyset.json"
    if keyset_path.exists() or any(out.glob("decryptor-*/share.json")):
        raise ConfigError(f"{out} already holds a threshold key; choose another --out (shares are never overwritten)")
    require_majority(args.parties, args.threshold)
    _, shares = deal(args.key_bits, args.parties, args.threshold, insecure_key_bits=args.insecure_key_bits)
    keys = key_set(shares)
    out.mkdir(parents=True, exist_ok=True)
    for share in shares:
        directory = out / f"decryptor-{share.index}"
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
        write_share(share, directory / "share.json")
    keys.save(keyset_path)
    del shares
    print(f"dealt a {args.threshold}-of-{args.parties} threshold key ({args.key_bits} bits)")
    print(f"public key set: {keyset_path}")
    print(f"shares (mode 600): {out}/decryptor-<1..{args.parties}>/share.json; move each to its decryptor's host")
    return 0
