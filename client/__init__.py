"""Client processes: one OS process hosts one or more (virtual) clients of a federation.

Each hosted client joins the coordinator on its own, receives its tasks by long poll, trains on its
own shard with the fedgrad engine and streams its update back. The process keeps its gRPC channel,
its clients' shards and one built model alive across rounds, so a round costs only the work itself.
Entry point: :func:`client.pool.run_clients` (``fedgrad client`` on the command line).
"""
