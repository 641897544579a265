"""Every kind of bad update, sent into a live federation: each is refused with a clear status, the round goes
on, and nothing is lost — the run ends exactly as a run without the attacker does.

Client 2 is hostile first: it takes its TRAIN task and fires the whole battery at the coordinator. Then an
honest client process for the same id (same token) takes the same task and answers it properly, so a run
in which every refusal worked ends bit for bit like the clean run of the same seed.
"""
import asyncio
import json
import math
import warnings

import grpc
import numpy as np
import pytest

import fedgrad.modes.dp
from client.pool import run_clients
from client.session import ClientOptions
from fedgrad.crypto import InsecureKeyWarning, SecureAggConfig, make_encoder, public_key_from_bytes
from fedgrad.crypto.wire import HEADER_BYTES, ciphertext_width, dump_payload
from fedgrad.data import load_shard
from fedgrad.modes.base import ClientPrivacy
from fedgrad.privacy import noise_rng
from fedgrad.security.tokens import read_token_file
from fedgrad.transport import fedgrad_pb2 as pb
from fedgrad.transport import fedgrad_pb2_grpc as pb_grpc
from fedgrad.transport.channel import MAX_MESSAGE_BYTES, PROTOCOL_VERSION, open_channel
from fedgrad.transport.codec import MAX_CHUNK_BYTES, encode_tensors, payload_size
from fedgrad.transport.convert import manifest_from_pb, manifest_to_pb

pytestmark = [pytest.mark.faults, pytest.mark.filterwarnings("ignore::fedgrad.crypto.InsecureKeyWarning")]

HOSTILE = "2"
INVALID, STALE = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION
FAST = ClientOptions(wait_s=2.0, rpc_timeout_s=20.0, connect_timeout_s=20.0, backoff_max_s=0.2)
TEST_CLIENTS = ClientPrivacy(allow_insecure_keys=True, noise_seed=5)
PRIVACY = {
    "none": {},
    "paillier-trusted": {"mode": "paillier-trusted", "key_bits": 512, "insecure_key_bits": True, "clip": 5.0},
    "dp": {"mode": "dp", "epsilon": 1000.0, "dp_clip": 50.0},
}


async def plain_battery(hostile, task: pb.TaskHeader, model: dict) -> None:
    """Everything wrong a plain (or DP) update can be, one at a time."""
    good = {name: np.zeros_like(value) for name, value in model.items()}
    first = next(iter(good))
    _specs, payload = encode_tensors(good)

    async def tensors(what, tensors, fragment):
        wrong_specs, wrong_payload = encode_tensors(tensors)
        await hostile.update(what, task, wrong_payload, INVALID, fragment, tensors=manifest_to_pb(wrong_specs))

    await tensors("wrong tensor name", {("x" + name if name == first else name): v for name, v in good.items()},
                  "lacks tensor")
    await tensors("extra tensor", {**good, "extra": np.zeros(3, np.float32)}, "unknown tensor(s) 'extra'")
    await tensors("wrong shape", {**good, first: np.zeros(good[first].size + 1, np.float32)}, "has shape")
    await tensors("wrong dtype", {**good, first: good[first].astype(np.float64)}, "has dtype float64")
    for what, value, fragment in (("NaN in an update", np.nan, "NaN"), ("Inf in an update", np.inf, "inf"),
                                  ("update beyond any plausible size", 1e12, "")):
        poisoned = {name: value.copy() for name, value in good.items()}
        poisoned[first].flat[0] = value
        await hostile.update(what, task, encode_tensors(poisoned)[1], INVALID, fragment)
    if task.HasField("privacy") and task.privacy.mode == "dp":  # central DP: the coordinator checks L2 norms
        over = {name: value.copy() for name, value in good.items()}
        over[first].flat[0] = 2 * json.loads(task.privacy.params_json)["l2_clip"]
        await hostile.update("update norm over the DP clip bound", task, encode_tensors(over)[1], INVALID,
                             "above the DP clip bound")
    await hostile.update("wrong model version", task, payload, STALE, "model version", model_version=99)
    await hostile.update("wrong round", task, payload, STALE, "answer is for round 7", round=7)
    await hostile.update("task id of another task", task, payload, STALE, "open task is", task_id=task.task_id + 50)
    await hostile.update("wrong encoding", task, payload, INVALID, "encoding PAILLIER", encoding=pb.PAILLIER)
    await hostile.update("false example count", task, payload, INVALID, "claims 12345 examples", n_examples=12345)
    await hostile.update("non-finite metric", task, payload, INVALID, "not finite", metrics={"loss": math.inf})
    await hostile.update("announced size not the model's", task, payload, INVALID, "announces",
                         payload_bytes=len(payload) + 4)
    await hostile.update("announced size huge", task, payload, INVALID, "announces", payload_bytes=1 << 40)
    await hostile.refused("truncated stream", [pb.AnswerChunk(update=hostile.header(task, payload)),
                                               pb.AnswerChunk(data=payload[:-3])], INVALID, "stream ended after")
    await hostile.refused("oversized stream", [pb.AnswerChunk(update=hostile.header(task, payload)),
                                               pb.AnswerChunk(data=payload + b"\0" * 8)], INVALID, "more than the")
    await hostile.refused("stream without a header", [pb.AnswerChunk(data=payload)], INVALID, "start with its header")
    await hostile.refused("data past the announced payload", [*hostile.messages(task, payload, round=7),
                                                              pb.AnswerChunk(data=b"\0")],
                          INVALID, "outside an update's announced payload")  # (a valid update would count)
    # the second header cuts the first update's payload short, and the call ends before the second's
    await hostile.refused("two headers", [pb.AnswerChunk(update=hostile.header(task, payload))] * 2, INVALID,
                          "stream ended after 0")


async def paillier_battery(hostile, task: pb.TaskHeader, model: dict) -> None:
    """Ciphertexts out of range, of the wrong width or key, mislabelled, truncated; and a plain update."""
    cfg = SecureAggConfig.from_dict(json.loads(task.privacy.params_json)["secure"])
    key = public_key_from_bytes(task.privacy.public_key, insecure_key_bits=True)
    count, width = make_encoder(cfg, key).scheme.n_ciphertexts, ciphertext_width(key)
    fingerprint = cfg.fingerprint(key.n)
    ones = [1] * count  # 1 is a valid ciphertext (of 0, randomness 1)
    for what, payload, fragment in (
            ("ciphertext 0", dump_payload(fingerprint, 1, [0, *ones[1:]], width), "outside (0, n²)"),
            ("ciphertext n² (out of range)", dump_payload(fingerprint, 1, [key.nsquare, *ones[1:]], width),
             "outside (0, n²)"),
            ("ciphertext sharing a factor with n", dump_payload(fingerprint, 1, [key.n, *ones[1:]], width),
             "not a unit mod n"),
            ("ciphertexts for another key", dump_payload(b"\0" * 8, 1, ones, width), "another key"),
            ("a client claiming to be an aggregate", dump_payload(fingerprint, 2, ones, width), "aggregate of 2"),
            ("ciphertexts of the wrong width", _rewidth(dump_payload(fingerprint, 1, ones, width), width - 1),
             "width")):
        await hostile.update(what, task, payload, INVALID, fragment)
    whole = dump_payload(fingerprint, 1, ones, width)
    await hostile.update("ciphertext payload one byte short", task, whole[:-1], INVALID, "payload bytes")
    await hostile.update("plain update in a secure round", task, encode_tensors(model)[1], INVALID,
                         "encoding PLAIN", encoding=pb.PLAIN, payload_bytes=len(whole))


def _rewidth(payload: bytes, width: int) -> bytes:
    """The same bytes with the header claiming another ciphertext width (so the sizes no longer add up)."""
    header = bytearray(payload[:HEADER_BYTES])
    header[-2:] = width.to_bytes(2, "big")
    return bytes(header) + payload[HEADER_BYTES:]


async def transport_battery(hostile, address: str, security, task: pb.TaskHeader) -> None:
    """Garbage bytes, a message over the size limit, and a chunk over the chunk limit."""
    garbage = b"\xff\xfe\x00 not a protobuf \x0a\xff"
    async with open_channel(address, security) as channel:
        join: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/fedgrad.Coordinator/Join")
        get_task: grpc.aio.UnaryStreamMultiCallable[bytes, bytes] = channel.unary_stream(
            "/fedgrad.Coordinator/GetTask")
        for method, call in (("Join", lambda: join(garbage, timeout=10)),
                             ("GetTask", lambda: _drain(get_task(garbage, timeout=10))),
                             ("Answer", lambda: _drain(channel.stream_stream("/fedgrad.Coordinator/Answer")(
                                 _iterate([garbage]), timeout=10)))):
            with hostile.tally.bad_input(f"garbage bytes to {method}") as bad:
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await call()
                code, details = caught.value.code(), caught.value.details() or ""
                if (code == INVALID and f"malformed {method} message" in details
                        and "Wire format was corrupt" in details):
                    bad.refused(f"{code.name}: {details}")
                assert code == INVALID, details
                assert f"malformed {method} message" in details
                assert "Wire format was corrupt" in details
    # A channel without fedgrad's send limit, to get a message over the coordinator's receive limit out.
    async with _unlimited_channel(address, security) as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        header = hostile.header(task, b"", payload_bytes=_round_payload_bytes(task))
        await hostile.refused("message over the size limit", [pb.AnswerChunk(update=header),
                                                              pb.AnswerChunk(data=b"\0" * (MAX_MESSAGE_BYTES + 1))],
                              grpc.StatusCode.RESOURCE_EXHAUSTED, "larger than max", stub=stub)
    await hostile.refused("chunk over the chunk limit", [
        pb.AnswerChunk(update=hostile.header(task, b"", payload_bytes=_round_payload_bytes(task))),
        pb.AnswerChunk(data=b"\0" * (MAX_CHUNK_BYTES + 1))], INVALID, "chunk limit")


def _round_payload_bytes(task: pb.TaskHeader) -> int:
    if task.HasField("privacy") and task.privacy.public_key:
        cfg = SecureAggConfig.from_dict(json.loads(task.privacy.params_json)["secure"])
        key = public_key_from_bytes(task.privacy.public_key, insecure_key_bits=True)
        return HEADER_BYTES + make_encoder(cfg, key).scheme.n_ciphertexts * ciphertext_width(key)
    return payload_size(manifest_from_pb(task.tensors))


async def _drain(call) -> None:
    async for _ in call:
        pass


async def _iterate(items):
    for item in items:
        yield item


def _unlimited_channel(address: str, security) -> grpc.aio.Channel:
    options = [("grpc.max_send_message_length", -1)]
    return grpc.aio.secure_channel(address, security.credentials(), options=options)


async def impersonation_battery(hostile, task: pb.TaskHeader, payload: bytes) -> None:
    unauthenticated = grpc.StatusCode.UNAUTHENTICATED
    forged = pb.Credentials(run_id=hostile.credentials.run_id, client_id=HOSTILE, token="forged.token")
    await hostile.update("forged token", task, payload, unauthenticated, "not valid for this run", credentials=forged)
    as_other = pb.Credentials(run_id=hostile.credentials.run_id, client_id="0", token=hostile.token)
    await hostile.update("another client's id with my token", task, payload, unauthenticated, "not valid",
                         credentials=as_other)
    unknown = pb.Credentials(run_id=hostile.credentials.run_id, client_id="99", token=hostile.token)
    await hostile.update("unknown client id", task, payload, unauthenticated, "unknown client id '99'",
                         credentials=unknown)
    with hostile.tally.bad_input("join as an unknown client") as bad:
        reply = await hostile.stub.Join(pb.JoinRequest(client_id="99", token=hostile.token,
                                                       protocol_version=PROTOCOL_VERSION), timeout=10)
        if not reply.accepted and "unknown client id '99'" in reply.reason:
            bad.refused(f"join refused: {reply.reason}")
        assert not reply.accepted and "unknown client id '99'" in reply.reason


async def federation_run(lab, scenario, *, hostile_battery=None):
    """Run ``scenario`` with in-process clients; with ``hostile_battery``, client 2 attacks first."""
    async with lab.federation(scenario) as fed:
        ids = ["0", "1", "2"]
        shards = {cid: load_shard(fed.run_dir / "data", int(cid)) for cid in ids}
        tokens = read_token_file(fed.token_file, ids)
        security = lab.client_security()
        honest = ids if hostile_battery is None else ids[:-1]
        clients = [asyncio.create_task(run_clients(fed.address, {cid: shards[cid] for cid in honest}, options=FAST,
                                                   tokens=tokens, security=security, privacy=TEST_CLIENTS))]
        if hostile_battery is not None:
            async with open_channel(fed.address, security) as channel:
                hostile = lab.manual_client(channel, HOSTILE, tokens[HOSTILE], len(shards[HOSTILE]))
                await hostile.join()
                task, model = await hostile.train_task()
                await hostile_battery(hostile, task, model)
                await transport_battery(hostile, fed.address, security, task)
                await impersonation_battery(hostile, task, encode_tensors(model)[1])
            # The honest client 2 (same id, same token) takes the same task and answers it.
            clients.append(asyncio.create_task(run_clients(fed.address, {HOSTILE: shards[HOSTILE]}, options=FAST,
                                                           tokens=tokens, security=security, privacy=TEST_CLIENTS)))
        await asyncio.wait_for(fed.run, 120)
        await asyncio.wait_for(asyncio.gather(*clients), 30)
        return fed.records(), dict(fed.coordinator.state.global_model)


@pytest.mark.parametrize("mode", ["none", "paillier-trusted", "dp"])
def test_every_bad_update_is_refused_and_the_run_ends_as_if_none_was_sent(lab, tally, mode, monkeypatch):
    scenario = lab.scenario(rounds=2, min_clients=3, timeout_s=30.0, privacy=PRIVACY[mode])
    # DP noise comes from the OS; the two runs compared here draw the same noise only from an injected seed.
    monkeypatch.setattr(fedgrad.modes.dp, "noise_rng", lambda seed=None, *stream: noise_rng(5, *stream))
    battery = paillier_battery if mode == "paillier-trusted" else plain_battery
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureKeyWarning)
        clean_records, clean_model = asyncio.run(federation_run(lab, scenario))
        before_tried, before_rejected = tally.bad_inputs_tried, tally.bad_inputs_rejected
        attacked_records, attacked_model = asyncio.run(federation_run(lab, scenario, hostile_battery=battery))
    assert tally.bad_inputs_tried - before_tried >= 14
    assert tally.bad_inputs_rejected - before_rejected == tally.bad_inputs_tried - before_tried
    missing = sum(clean.clients_used - attacked.clients_used
                  for clean, attacked in zip(clean_records, attacked_records, strict=True))
    tally.lost(missing)
    assert missing == 0
    assert lab.traces.learned(attacked_records) == lab.traces.learned(clean_records)
    for name, value in clean_model.items():
        np.testing.assert_array_equal(attacked_model[name], value)
