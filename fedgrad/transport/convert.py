"""Protobuf messages <-> ``fedgrad.protocol`` records: the one place where the two meet.

Every record that crosses the wire converts both ways here: the manifest, the tasks (TRAIN, EVALUATE, WAIT,
SHUTDOWN) and their announcement, and a client's answers (an update's header, an evaluation report, a
decline). The coordinator's service and the client's connection call these at the edge; everything below
them works on plain records. A message that does not convert raises :class:`WireError` (or ``ConfigError`` for a
task configuration that does not parse).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import cast

from fedgrad.protocol import (
    Announcement,
    DType,
    Encoding,
    EvaluateTask,
    EvaluationReport,
    ShutdownTask,
    Task,
    TaskConfig,
    TaskDecline,
    TaskKind,
    TensorSpec,
    TrainTask,
    UpdateAnnouncement,
    WaitTask,
)
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport.codec import WireError, payload_size

#: Wire dtype <-> record dtype.
_DTYPES: dict[DType, pb.DType] = {DType.FLOAT32: pb.FLOAT32, DType.FLOAT64: pb.FLOAT64,
                                  DType.INT32: pb.INT32, DType.INT64: pb.INT64}
_FROM_WIRE_DTYPES = {code: dtype for dtype, code in _DTYPES.items()}


# ---- the manifest ----------------------------------------------------------------------------------------------

def manifest_to_pb(specs: Iterable[TensorSpec]) -> list[pb.TensorSpec]:
    return [pb.TensorSpec(name=spec.name, shape=spec.shape, dtype=_DTYPES[spec.dtype]) for spec in specs]


def manifest_from_pb(specs: Iterable[pb.TensorSpec]) -> tuple[TensorSpec, ...]:
    """The manifest as records; :class:`WireError` for a dtype this build does not know."""
    manifest = []
    for spec in specs:
        dtype = _FROM_WIRE_DTYPES.get(spec.dtype)
        if dtype is None:
            raise WireError(f"tensor {spec.name!r}: unknown dtype code {spec.dtype}")
        manifest.append(TensorSpec(spec.name, tuple(spec.shape), dtype))
    return tuple(manifest)


# ---- tasks -----------------------------------------------------------------------------------------------------

def announcement_to_pb(announcement: Announcement) -> pb.PrivacyAnnouncement:
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


def task_to_pb(task: Task, privacy: pb.PrivacyAnnouncement | None = None) -> pb.TaskHeader:
    """A task's header; ``privacy``: its announcement already converted (:class:`TaskMessages` shares one per
    round), else converted here."""
    kind = cast(pb.TaskKind, int(task.kind))  # the wire enum has the same numbers
    if isinstance(task, WaitTask | ShutdownTask):
        return pb.TaskHeader(kind=kind, task_id=task.task_id)
    header = pb.TaskHeader(kind=kind, task_id=task.task_id, round=task.round, model_version=task.model_version,
                           config_json=task.config.to_json(), tensors=manifest_to_pb(task.manifest),
                           payload_bytes=payload_size(task.manifest))
    if isinstance(task, TrainTask):
        header.weight = task.weight
        if task.announcement is not None:
            header.privacy.CopyFrom(privacy if privacy is not None else announcement_to_pb(task.announcement))
    return header


def task_from_pb(header: pb.TaskHeader) -> Task:
    """The task a header describes; :class:`WireError` (or ``ConfigError`` for its configuration) when it does
    not parse, or when it announces a payload its manifest does not describe."""
    try:
        kind = TaskKind(header.kind)
    except ValueError:
        raise WireError(f"unknown task kind {header.kind}") from None
    if kind == TaskKind.WAIT:
        return WaitTask(header.task_id)
    if kind == TaskKind.SHUTDOWN:
        return ShutdownTask(header.task_id)
    manifest = manifest_from_pb(header.tensors)
    if header.payload_bytes != payload_size(manifest):
        raise WireError(f"task announces {header.payload_bytes} payload bytes for a manifest of "
                        f"{payload_size(manifest)}")
    config = TaskConfig.from_json(header.config_json)
    if kind == TaskKind.EVALUATE:
        return EvaluateTask(header.task_id, header.round, header.model_version, config, manifest)
    announcement = announcement_from_pb(header.privacy) if header.HasField("privacy") else None
    return TrainTask(header.task_id, header.round, header.model_version, header.weight, config, manifest,
                     announcement)


class TaskMessages:
    """Tasks as GetTask streams them: each task's header, naming its client, then its model's payload as ``data``
    chunks, unless the call's previous task carried the same model (``model_as_before``: no chunks).

    Every task of a round shares one announcement and every task of a model version the same payload: their
    messages are made once, for the last announcement and payload seen (the same objects, not equal ones). Every
    call is sent the same chunk messages; the announcement, which lists a secure round's whole cohort, is
    converted once per round and copied into each header only as that header is sent.
    """

    def __init__(self) -> None:
        self._announcement: Announcement | None = None
        self._privacy: pb.PrivacyAnnouncement | None = None
        self._pieces: Sequence[bytes] = ()
        self._chunks: tuple[pb.TaskChunk, ...] = ()
        self._chunk_bytes = 0

    def stream(self, task: Task, pieces: Sequence[bytes] = (), *, client_id: str = "",
               model_as_before: bool = False) -> Iterator[pb.TaskChunk]:
        """The messages of ``client_id``'s ``task`` whose payload is ``pieces`` (chunks of at most
        ``MAX_CHUNK_BYTES``), without the chunks when ``model_as_before``."""
        header = task_to_pb(task, self._privacy_of(task))
        header.client_id = client_id
        header.model_as_before = model_as_before
        yield pb.TaskChunk(header=header)
        if not model_as_before:
            yield from self._chunks_of(pieces)

    def payload_wire_bytes(self, pieces: Sequence[bytes]) -> int:
        """What the chunks of ``pieces`` take on the wire: what a task whose model is not sent again still counts
        (bytes down are accounted per client, as if each had received the model on its own)."""
        self._chunks_of(pieces)
        return self._chunk_bytes

    def _privacy_of(self, task: Task) -> pb.PrivacyAnnouncement | None:
        announcement = task.announcement if isinstance(task, TrainTask) else None
        if announcement is None:
            return None
        if announcement is not self._announcement:
            self._announcement, self._privacy = announcement, announcement_to_pb(announcement)
        return self._privacy

    def _chunks_of(self, pieces: Sequence[bytes]) -> tuple[pb.TaskChunk, ...]:
        if pieces is not self._pieces:
            self._pieces, self._chunks = pieces, tuple(pb.TaskChunk(data=piece) for piece in pieces)
            self._chunk_bytes = sum(chunk.ByteSize() for chunk in self._chunks)
        return self._chunks


# ---- a client's answers ----------------------------------------------------------------------------------------

def encoding_from_pb(value: int) -> Encoding | None:
    """The encoding, or None for a number this build does not know."""
    try:
        return Encoding(value)
    except ValueError:
        return None


def update_announcement_to_pb(header: UpdateAnnouncement, credentials: pb.Credentials) -> pb.UpdateHeader:
    return pb.UpdateHeader(
        credentials=credentials, task_id=header.task_id, round=header.round, model_version=header.model_version,
        n_examples=header.n_examples, metrics=header.metrics, train_s=header.train_s, encrypt_s=header.encrypt_s,
        encoding=cast(pb.Encoding, header.raw_encoding), tensors=manifest_to_pb(header.manifest),
        payload_bytes=header.payload_bytes, signature=header.signature)


def update_announcement_from_pb(header: pb.UpdateHeader) -> UpdateAnnouncement:
    """An update's header as a record; :class:`WireError` when its manifest does not parse."""
    return UpdateAnnouncement(task_id=header.task_id, round=header.round, model_version=header.model_version,
                              n_examples=header.n_examples, metrics=dict(header.metrics), train_s=header.train_s,
                              encrypt_s=header.encrypt_s, encoding=encoding_from_pb(header.encoding),
                              raw_encoding=header.encoding, manifest=manifest_from_pb(header.tensors),
                              payload_bytes=header.payload_bytes, signature=bytes(header.signature))


def evaluation_report_to_pb(report: EvaluationReport, credentials: pb.Credentials) -> pb.EvaluationReport:
    return pb.EvaluationReport(credentials=credentials, task_id=report.task_id, round=report.round,
                               model_version=report.model_version, n_examples=report.n_examples,
                               metrics=report.metrics)


def evaluation_report_from_pb(message: pb.EvaluationReport) -> EvaluationReport:
    return EvaluationReport(message.task_id, message.round, message.model_version, message.n_examples,
                            dict(message.metrics))


def task_decline_to_pb(decline: TaskDecline, credentials: pb.Credentials) -> pb.TaskDecline:
    return pb.TaskDecline(credentials=credentials, task_id=decline.task_id, round=decline.round,
                          model_version=decline.model_version, reason=decline.reason)


def task_decline_from_pb(message: pb.TaskDecline) -> TaskDecline:
    return TaskDecline(message.task_id, message.round, message.model_version, message.reason)
