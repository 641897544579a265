"""Privacy in words: what a variant's privacy setting protects, and from whom (table cell and report sentence)."""
from __future__ import annotations

from fedgrad.crypto.keys import security_bits
from fedgrad.experiments.compare.grid import BASELINE_MODE, PAILLIER_MODES
from fedgrad.scenario import SECURE_KEY_BITS, Scenario


def privacy_guarantee(scenario: Scenario) -> tuple[str, str]:
    """``(short, full)`` description of what a run's privacy setting protects, and from whom.

    ``short`` fits a table cell (what the coordinator sees); ``full`` is the sentence for the report. For DP
    the numbers come from the same calibration the coordinator uses (``DPConfig``, ``dp-accounting``).
    """
    privacy, fed = scenario.privacy, scenario.federation
    if privacy.mode == BASELINE_MODE:
        return ("plaintext updates",
                "none: the coordinator sees every client's update in plaintext; with a bag-of-words model "
                "that reveals which words each client's emails contain")
    if privacy.mode in PAILLIER_MODES:
        strength = f"~{security_bits(privacy.key_bits)}-bit security"
        if privacy.key_bits < SECURE_KEY_BITS:
            strength = "INSECURE test key"
        scheme = "packed Paillier" if privacy.mode == "paillier" else "one Paillier ciphertext per value"
        return (f"ciphertexts; sum of >= {fed.min_clients}",
                f"secure aggregation ({scheme}, {privacy.key_bits}-bit key, {strength}): the coordinator sees each "
                f"client's update only as ciphertext and decrypts only the sum of at least {fed.min_clients} "
                "clients' updates; no differential-privacy bound on what that sum or the model reveals")
    from fedgrad.privacy import DPConfig  # dp-accounting (scipy) only when a DP variant is described

    config = DPConfig(epsilon=privacy.epsilon, clip=privacy.dp_clip, clients=fed.clients,
                      clients_per_round=fed.clients_per_round, rounds=fed.rounds, delta=privacy.delta or None,
                      placement=privacy.dp_placement)
    sees = "plaintext clipped updates" if config.placement == "central" else "noisy sum only"
    return (f"(ε={config.epsilon:g}, δ={config.target_delta:.0e})-DP; {sees}",
            config.guarantee(config.mechanism()))
