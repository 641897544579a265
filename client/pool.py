"""A client process: several virtual clients sharing one channel, one model and one training thread.

Hosting many clients per process is what lets a 5,000-client federation run on a laptop: an idle client is its
shard, credentials and last task id (:class:`~client.session.VirtualClient`), all of a process's clients wait
for tasks in one long poll (:class:`~client.session.ClientHost`) on one gRPC channel (one HTTP/2 connection), a
client works (a coroutine) only while it has a task, the round's model travels once per call and is decoded once
and shared read-only by the clients that hold it (:class:`~client.session.SharedModels`: none between rounds),
and the CPU work (training, evaluation) goes to a single worker thread. One worker is deliberate: the process is
meant to use about one core, and a client that finishes training uploads on the event loop while the next client
already trains.
"""
from __future__ import annotations

from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor

from client.connection import CoordinatorConnection, coordinator_stub
from client.session import DEFAULT_CLIENT_OPTIONS, ClientError, ClientHost, ClientOptions, VirtualClient
from client.trainer import LocalTrainer
from fedgrad.attacks import ClientAttack
from fedgrad.data import Shard
from fedgrad.modes.base import DEFAULT_CLIENT_PRIVACY, ClientPrivacy
from fedgrad.transport.channel import ClientSecurity, open_channel
from fedgrad.transport.codec import WireError


async def run_clients(address: str, shards: Mapping[str, Shard], *, device: str | None = None,
                      options: ClientOptions = DEFAULT_CLIENT_OPTIONS, tokens: Mapping[str, str] | None = None,
                      security: ClientSecurity | None = None, privacy: ClientPrivacy = DEFAULT_CLIENT_PRIVACY,
                      trusted_code: Collection[str] = (), attacks: Mapping[str, ClientAttack] | None = None) -> None:
    """Host the clients ``shards`` names (client id -> its shard) until the coordinator shuts the run down.

    ``tokens`` maps each client id to the run token it presents; ``security`` is the channel's TLS
    (None: plaintext); ``privacy`` is what the clients decide for themselves when encoding (key size, noise seed);
    ``trusted_code`` the user models they agree to run (see :class:`~client.trainer.LocalTrainer`); ``attacks`` what
    a simulation's attacking clients among them do (``fedgrad.attacks``).

    Raises :class:`ClientError` when a client cannot go on (join refused, coordinator gone); the
    other clients of the process stop with it.
    """
    trainer = LocalTrainer(device, privacy, trusted_code, attacks)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fedgrad-train") as executor:
        async with open_channel(address, security) as channel:
            stub = coordinator_stub(channel)
            clients = [VirtualClient(client_id, shard, CoordinatorConnection(
                stub, client_id, (tokens or {}).get(client_id, ""), options.rpc_timeout_s))
                for client_id, shard in shards.items()]
            host = ClientHost(stub, clients, trainer, executor, options)
            try:
                await host.run()
            except WireError as error:
                raise ClientError(f"malformed message from the coordinator at {address}: {error}") from None
