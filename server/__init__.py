"""The coordinator of a federated run.

``coordinator`` holds the round loop and all run state; ``service`` exposes it over gRPC;
``strategies`` (FedAvg, FedProx, FedAdam) and ``aggregation`` (the per-round accumulator seam) decide
how updates become the next global model; ``rounds``, ``registry``, ``tasks`` and ``validation`` keep
the bookkeeping; ``experiment`` assembles all of it from a scenario for the CLI.
"""
