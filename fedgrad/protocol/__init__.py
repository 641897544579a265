"""What the coordinator and its clients reason about, as plain Python: no gRPC, no protobuf.

``server/`` and ``client/`` both build on these records; protobuf messages are converted to and from them only
at the edges (``server.service``, ``client.connection``, through ``fedgrad.transport.convert``).
"""
from fedgrad.protocol.manifest import DType, TensorSpec
from fedgrad.protocol.records import Announcement, ClientUpdate, EncodedUpdate, Encoding, RoundCohort, WeightedSum
from fedgrad.protocol.refusal import Refusal, Rejected
from fedgrad.protocol.replies import EvaluationReport, TaskDecline, UpdateAnnouncement
from fedgrad.protocol.task_config import TaskConfig, TrainSettings, model_digest, task_digest
from fedgrad.protocol.tasks import EvaluateTask, ShutdownTask, Task, TaskKind, TrainTask, WaitTask

__all__ = ["Announcement", "ClientUpdate", "DType", "EncodedUpdate", "Encoding", "EvaluateTask", "EvaluationReport",
           "Refusal", "Rejected", "RoundCohort", "ShutdownTask", "Task", "TaskConfig", "TaskDecline", "TaskKind",
           "TensorSpec", "TrainSettings", "TrainTask", "UpdateAnnouncement", "WaitTask", "WeightedSum", "model_digest",
           "task_digest"]
