"""What the coordinator and its clients reason about, as plain Python: no gRPC, no protobuf.

``server/`` and ``client/`` both build on these records; protobuf messages are converted to and from them only
at the edges (``server.service``, ``client.session``, ``fedgrad.transport.convert``).
"""
from fedgrad.protocol.records import (
    Announcement,
    ClientUpdate,
    EncodedUpdate,
    Encoding,
    RoundCohort,
    TrainTask,
    WeightedSum,
)
from fedgrad.protocol.refusal import Refusal, Rejected
from fedgrad.protocol.task_config import TaskConfig, TrainSettings, model_digest, task_digest

__all__ = ["Announcement", "ClientUpdate", "EncodedUpdate", "Encoding", "Refusal", "Rejected", "RoundCohort",
           "TaskConfig", "TrainSettings", "TrainTask", "WeightedSum", "model_digest", "task_digest"]
