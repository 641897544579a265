"""A misbehaving client over gRPC: its bad updates are refused one by one, and the round goes on without them."""
import json
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest

from fedgrad.crypto import SecureAggConfig, make_encoder, public_key_from_bytes
from fedgrad.crypto.wire import ciphertext_width, dump_payload
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport import fedgrad_pb2_grpc as pb_grpc
from fedgrad.transport.channel import PROTOCOL_VERSION, open_channel
from fedgrad.transport.codec import PayloadBuffer, decode_tensors, encode_tensors, split_payload
from fedgrad.transport.convert import manifest_from_pb

ROGUE = "2"
ROGUE_EXAMPLES = 40


class Rogue:
    """Client ``ROGUE`` driven by hand: it takes its TRAIN task, lets ``misbehave`` submit what it likes,
    answers the final evaluation and leaves on SHUTDOWN."""

    def __init__(self, misbehave) -> None:
        self.misbehave = misbehave
        self.refusals: list[tuple[grpc.StatusCode, str]] = []

    async def __call__(self, address: str) -> None:
        async with open_channel(address) as channel:
            self.stub = pb_grpc.CoordinatorStub(channel)
            reply = await self.stub.Join(pb.JoinRequest(client_id=ROGUE, n_examples=ROGUE_EXAMPLES,
                                                        protocol_version=PROTOCOL_VERSION), timeout=10)
            assert reply.accepted, reply.reason
            self.credentials = pb.Credentials(run_id=reply.run_id, client_id=ROGUE)
            last = 0
            while True:
                task, model = await self.next_task(last)
                last = task.task_id or last
                if task.kind == pb.TRAIN:
                    await self.misbehave(self, task, model)
                elif task.kind == pb.EVALUATE:
                    [ack] = await self.answer([pb.AnswerChunk(evaluation=pb.EvaluationReport(
                        credentials=self.credentials, task_id=task.task_id, round=task.round,
                        model_version=task.model_version, n_examples=ROGUE_EXAMPLES,
                        metrics={"accuracy": 0.5, "loss": 1.0}))])
                    assert ack.status == 0, ack.detail
                elif task.kind == pb.SHUTDOWN:
                    return

    async def next_task(self, last: int):
        header, buffer = None, None
        request = pb.TaskRequest(clients=[pb.ClientPoll(credentials=self.credentials, last_task_id=last)], wait_s=2.0)
        async for message in self.stub.GetTask(request, timeout=20):
            if header is None:
                header, buffer = message.header, PayloadBuffer(message.header.payload_bytes)
            else:
                buffer.append(message.data)
        model = decode_tensors(manifest_from_pb(header.tensors), buffer.payload()) if header.payload_bytes else None
        return header, model

    async def answer(self, messages) -> list:
        """One Answer call carrying ``messages``: its acknowledgements."""
        async def stream() -> AsyncIterator[pb.AnswerChunk]:
            for message in messages:
                yield message

        return [ack async for ack in self.stub.Answer(stream(), timeout=10)]

    async def submit(self, task: pb.TaskHeader, payload: bytes, encoding: pb.Encoding, *,
                     succeed: bool = False) -> None:
        """Send ``payload``; record the refusal (or, with ``succeed``, insist on acceptance)."""
        header = pb.UpdateHeader(credentials=self.credentials, task_id=task.task_id, round=task.round,
                                 model_version=task.model_version, n_examples=ROGUE_EXAMPLES, encoding=encoding,
                                 tensors=task.tensors, payload_bytes=len(payload))

        messages = [pb.AnswerChunk(update=header), *(pb.AnswerChunk(data=piece) for piece in split_payload(payload))]
        [ack] = await self.answer(messages)
        if ack.status:
            assert not succeed, ack.detail
            self.refusals.append((_STATUS[ack.status], ack.detail))
        else:
            assert succeed, "the coordinator accepted a bad update"


_STATUS = {code.value[0]: code for code in grpc.StatusCode}


def zeros_like(model):
    return {name: np.zeros_like(value) for name, value in model.items()}


async def bad_ciphertexts(rogue: Rogue, task: pb.TaskHeader, model) -> None:
    announced = task.privacy
    cfg = SecureAggConfig.from_dict(json.loads(announced.params_json)["secure"])
    key = public_key_from_bytes(announced.public_key, insecure_key_bits=True)
    count, width = make_encoder(cfg, key).scheme.n_ciphertexts, ciphertext_width(key)
    fingerprint = cfg.fingerprint(key.n)
    valid = [1] * count  # 1 is a valid ciphertext (of 0 with randomness 1)
    await rogue.submit(task, encode_tensors(zeros_like(model))[1], pb.PLAIN)
    for ciphertexts, fp, contributors in (([0] * count, fingerprint, 1),
                                          ([key.n, *valid[1:]], fingerprint, 1),
                                          ([key.nsquare, *valid[1:]], fingerprint, 1),
                                          (valid, b"\0" * 8, 1),
                                          (valid, fingerprint, 2)):
        await rogue.submit(task, dump_payload(fp, contributors, ciphertexts, width), pb.PAILLIER)
    await rogue.submit(task, dump_payload(fingerprint, 1, valid, width)[:-1], pb.PAILLIER)


def test_bad_ciphertexts_are_refused_and_the_round_completes_without_them(scenario, run):
    rogue = Rogue(bad_ciphertexts)
    finished = run(scenario('privacy.mode="paillier-trusted"', "federation.rounds=1", "federation.round_timeout_s=2"),
                   rogue=rogue)
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    expected = ["encoding PLAIN is not accepted", "outside (0, n²)", "not a unit mod n", "outside (0, n²)",
                "made for another key", "sent an aggregate of 2 updates", "payload bytes"]
    assert len(rogue.refusals) == len(expected)
    for (code, detail), fragment in zip(rogue.refusals, expected, strict=True):
        assert code == invalid and fragment in detail, detail
    [record] = finished.records
    assert (record.clients_used, record.clients_dropped) == (2, 1)
    assert record.loss < finished.summary.initial.loss
    assert finished.summary.client_evaluation.clients >= 2


async def oversized_then_clipped(rogue: Rogue, task: pb.TaskHeader, model) -> None:
    params = json.loads(task.privacy.params_json)
    clip = params["l2_clip"]
    assert task.privacy.mode == "dp" and params["noise_std"] == 0 and not task.privacy.public_key
    update = zeros_like(model)
    name = next(iter(update))
    update[name].flat[0] = 2 * clip
    await rogue.submit(task, encode_tensors(update)[1], pb.PLAIN)
    update[name].flat[0] = np.nan
    await rogue.submit(task, encode_tensors(update)[1], pb.PLAIN)
    update[name].flat[0] = clip  # exactly on the bound
    await rogue.submit(task, encode_tensors(update)[1], pb.PLAIN, succeed=True)


def test_central_dp_refuses_updates_above_the_clip_bound(scenario, run):
    rogue = Rogue(oversized_then_clipped)
    finished = run(scenario('privacy.mode="dp"', "privacy.epsilon=1000", "privacy.dp_clip=0.5",
                            "federation.rounds=1"), rogue=rogue)
    assert [code for code, _ in rogue.refusals] == [grpc.StatusCode.INVALID_ARGUMENT] * 2
    assert "L2 norm 1, above the DP clip bound 0.5" in rogue.refusals[0][1]
    assert "contains NaN or infinite values" in rogue.refusals[1][1]
    assert finished.records[0].clients_used == 3


@pytest.mark.parametrize("mode", ["paillier-trusted", "dp"])
def test_secure_modes_need_two_contributors(scenario, mode):
    from fedgrad.errors import ConfigError
    from fedgrad.modes.resolve import privacy_mode

    overrides = [f'privacy.mode="{mode}"', "federation.min_clients=1"]
    if mode == "dp":
        privacy_mode(scenario(*overrides))  # central DP decrypts nothing: one contributor is allowed
        overrides.append('privacy.dp_placement="distributed"')
    with pytest.raises(ConfigError, match=r"federation.min_clients: secure aggregation"):
        privacy_mode(scenario(*overrides))
