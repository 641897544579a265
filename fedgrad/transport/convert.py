"""Protobuf messages <-> ``fedgrad.protocol`` records: the one place where the two meet.

The coordinator's service and the client's session call these at the edge; everything below them works on
plain records.
"""
from __future__ import annotations

import json

from fedgrad.protocol import Announcement, Encoding, TaskConfig, TrainTask
from fedgrad.protocol.records import UpdateAnnouncement
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport.codec import WireError, manifest


def announcement_to_pb(announcement: Announcement | None) -> pb.PrivacyAnnouncement | None:
    if announcement is None:
        return None
    return pb.PrivacyAnnouncement(mode=announcement.mode, params_json=json.dumps(announcement.params, sort_keys=True),
                                  public_key=announcement.public_key, cohort=list(announcement.cohort))


def announcement_from_pb(message: pb.PrivacyAnnouncement) -> Announcement:
    try:
        params = json.loads(message.params_json) if message.params_json else {}
    except ValueError as error:
        raise WireError(f"malformed privacy parameters: {error}") from None
    if not isinstance(params, dict):
        raise WireError("privacy parameters must be a JSON object")
    return Announcement(message.mode, params, bytes(message.public_key), tuple(message.cohort))


def train_task_from_pb(header: pb.TaskHeader, run_id: str = "", local_examples: int = 0) -> TrainTask:
    """The TRAIN task a header describes (:class:`WireError` or ``ConfigError`` when it does not parse), for a
    client of run ``run_id`` holding ``local_examples`` examples."""
    return TrainTask(task_id=header.task_id, round=header.round, model_version=header.model_version,
                     weight=header.weight, config=TaskConfig.from_json(header.config_json),
                     tensor_names=tuple(spec.name for spec in header.tensors),
                     announcement=announcement_from_pb(header.privacy) if header.HasField("privacy") else None,
                     run_id=run_id, local_examples=local_examples)


def encoding_from_pb(value: int) -> Encoding | None:
    """The encoding, or None for a number this build does not know."""
    try:
        return Encoding(value)
    except ValueError:
        return None


def update_announcement_from_pb(header: pb.UpdateHeader) -> UpdateAnnouncement:
    """An update's header as a record; :class:`WireError` when its manifest does not parse."""
    return UpdateAnnouncement(task_id=header.task_id, round=header.round, model_version=header.model_version,
                              n_examples=header.n_examples, metrics=dict(header.metrics), train_s=header.train_s,
                              encrypt_s=header.encrypt_s, encoding=encoding_from_pb(header.encoding),
                              raw_encoding=header.encoding, manifest=manifest(header.tensors),
                              payload_bytes=header.payload_bytes, signature=bytes(header.signature))
