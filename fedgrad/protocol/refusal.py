"""Refusals: a call the coordinator (or a decryptor) turns down, and what kind of refusal it is.

A refusal is never fatal to the run: the offending call fails with a one-line message naming what was wrong,
and the round goes on. The kind tells the caller what to do next; ``server.service`` maps each kind to a
gRPC status code, so nothing below the service knows about gRPC.
"""
from __future__ import annotations

import enum


class Refusal(enum.Enum):
    """Why a call was refused."""

    INVALID = "invalid"                  # the request itself is malformed (bad manifest, NaN, truncated stream)
    STALE = "stale"                      # well formed, but does not fit the state (wrong round, not selected, late)
    UNAUTHENTICATED = "unauthenticated"  # unknown run, client or token: join (again)
    REVOKED = "revoked"                  # the client was revoked for this run: stop
    RESOURCE = "resource"                # a bound is reached (too many updates for the packing headroom)


class Rejected(Exception):
    """A refused call; ``kind`` says why (see :class:`Refusal`)."""

    def __init__(self, kind: Refusal, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    @classmethod
    def invalid(cls, message: str) -> Rejected:
        return cls(Refusal.INVALID, message)

    @classmethod
    def stale(cls, message: str) -> Rejected:
        return cls(Refusal.STALE, message)

    @classmethod
    def unauthenticated(cls, message: str) -> Rejected:
        return cls(Refusal.UNAUTHENTICATED, message)

    @classmethod
    def revoked(cls, message: str) -> Rejected:
        return cls(Refusal.REVOKED, message)

    @classmethod
    def resource(cls, message: str) -> Rejected:
        return cls(Refusal.RESOURCE, message)
