"""Every record that crosses the wire converts to protobuf and back unchanged, and a message that does not
convert is refused with a one-line :class:`WireError`."""
from typing import cast

import numpy as np
import pytest

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
    TensorSpec,
    TrainSettings,
    TrainTask,
    UpdateAnnouncement,
    WaitTask,
)
from fedgrad.scenario import ModelConfig
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport.codec import WireError, encode_tensors
from fedgrad.transport.convert import (
    TaskMessages,
    announcement_from_pb,
    announcement_to_pb,
    evaluation_report_from_pb,
    evaluation_report_to_pb,
    manifest_from_pb,
    manifest_to_pb,
    task_decline_from_pb,
    task_decline_to_pb,
    task_from_pb,
    task_to_pb,
    update_announcement_from_pb,
    update_announcement_to_pb,
)

MANIFEST = (TensorSpec("embedding.weight", (7, 3), DType.FLOAT32), TensorSpec("scalar", (), DType.FLOAT64),
            TensorSpec("counts", (5,), DType.INT32), TensorSpec("ids", (2, 0), DType.INT64))
CONFIG = TaskConfig(ModelConfig(name="mlp", hidden=8), 50, TrainSettings(epochs=2, batch_size=4, lr=0.5,
                                                                       optimizer="adam", prox_mu=0.1), seed=7)
ANNOUNCEMENT = Announcement("paillier", {"secure": {"clip": 1.5}, "weights": [1, 2]}, b"\x01key", ("a", "b", "c"))
CREDENTIALS = pb.Credentials(run_id="run", client_id="a", token="secret")


def test_the_manifest_round_trips_with_every_dtype():
    assert manifest_from_pb(manifest_to_pb(MANIFEST)) == MANIFEST
    assert {spec.dtype for spec in MANIFEST} == set(DType)


def test_a_manifest_naming_an_unknown_dtype_is_refused():
    with pytest.raises(WireError, match="'a': unknown dtype code 99"):
        manifest_from_pb([pb.TensorSpec(name="a", shape=[3], dtype=cast(pb.DType, 99))])


@pytest.mark.parametrize("task", [
    TrainTask(3, 2, 1, 0.25, CONFIG, MANIFEST, ANNOUNCEMENT),
    TrainTask(4, 2, 1, 12.0, CONFIG, MANIFEST, None),
    EvaluateTask(5, 10, 9, CONFIG, MANIFEST),
    WaitTask(6),
    ShutdownTask(7),
], ids=["train", "train-plain", "evaluate", "wait", "shutdown"])
def test_every_task_round_trips(task: Task):
    header = pb.TaskHeader.FromString(task_to_pb(task).SerializeToString())
    assert header.kind == int(task.kind)
    assert task_from_pb(header) == task


def test_the_announcement_round_trips():
    assert announcement_from_pb(announcement_to_pb(ANNOUNCEMENT)) == ANNOUNCEMENT


def test_a_task_announcing_a_payload_its_manifest_does_not_describe_is_refused():
    header = task_to_pb(EvaluateTask(5, 10, 9, CONFIG, MANIFEST))
    header.payload_bytes += 1
    with pytest.raises(WireError, match="announces"):
        task_from_pb(header)


def test_an_unknown_task_kind_is_refused():
    with pytest.raises(WireError, match="unknown task kind 9"):
        task_from_pb(pb.TaskHeader(kind=cast(pb.TaskKind, 9), task_id=1))


def test_malformed_privacy_parameters_are_refused():
    with pytest.raises(WireError, match="malformed privacy parameters"):
        announcement_from_pb(pb.PrivacyAnnouncement(mode="paillier", params_json="{"))
    with pytest.raises(WireError, match="must be a JSON object"):
        announcement_from_pb(pb.PrivacyAnnouncement(mode="paillier", params_json="[1]"))


def test_task_messages_carry_the_header_then_the_payload_and_share_the_round_s_messages():
    specs, payload = encode_tensors({"w": np.arange(6, dtype=np.float32)})
    pieces = (payload[:10], payload[10:])
    messages = TaskMessages()
    first = list(messages.stream(TrainTask(1, 1, 0, 1.0, CONFIG, tuple(specs), ANNOUNCEMENT), pieces))
    second = list(messages.stream(TrainTask(2, 1, 0, 2.0, CONFIG, tuple(specs), ANNOUNCEMENT), pieces))
    assert [message.WhichOneof("part") for message in first] == ["header", "data", "data"]
    assert b"".join(message.data for message in first[1:]) == payload
    assert all(a is b for a, b in zip(first[1:], second[1:], strict=True))  # one copy of the model's chunks
    assert task_from_pb(second[0].header) == TrainTask(2, 1, 0, 2.0, CONFIG, tuple(specs), ANNOUNCEMENT)
    other = Announcement("paillier", {}, b"\x02", ("a",))  # the next round's announcement replaces the last
    assert task_from_pb(next(messages.stream(TrainTask(3, 2, 0, 1.0, CONFIG, tuple(specs), other), pieces)).header
                        ).announcement == other
    assert [m.WhichOneof("part") for m in messages.stream(WaitTask(3))] == ["header"]


@pytest.mark.parametrize("encoding", [Encoding.PLAIN, Encoding.PAILLIER, None], ids=["plain", "paillier", "unknown"])
def test_an_update_header_round_trips(encoding: Encoding | None):
    header = UpdateAnnouncement(task_id=3, round=2, model_version=1, n_examples=40, metrics={"loss": 0.5},
                                train_s=1.25, encrypt_s=0.5, encoding=encoding,
                                raw_encoding=int(encoding) if encoding is not None else 42, manifest=MANIFEST,
                                payload_bytes=1234, signature=b"sig")
    message = update_announcement_to_pb(header, CREDENTIALS)
    assert message.credentials == CREDENTIALS
    assert update_announcement_from_pb(pb.UpdateHeader.FromString(message.SerializeToString())) == header


def test_an_evaluation_report_round_trips():
    report = EvaluationReport(task_id=9, round=10, model_version=10, n_examples=33,
                              metrics={"accuracy": 0.75, "loss": 0.5})
    message = evaluation_report_to_pb(report, CREDENTIALS)
    assert message.credentials == CREDENTIALS
    assert evaluation_report_from_pb(pb.EvaluationReport.FromString(message.SerializeToString())) == report


def test_a_task_decline_round_trips():
    decline = TaskDecline(task_id=9, round=4, model_version=3, reason="privacy.mode 'none' is not the policy's")
    message = task_decline_to_pb(decline, CREDENTIALS)
    assert message.credentials == CREDENTIALS
    assert task_decline_from_pb(pb.TaskDecline.FromString(message.SerializeToString())) == decline
