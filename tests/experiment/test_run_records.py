"""Typed run records (``fedgrad.results.schema``): one reader and one writer for every line and summary a run
writes, and run directories written before ``schema_version`` existed.

The ``MAIN_*`` lines are what fedgrad wrote at main 1ddc958 (before versioning), copied from real runs of
``scenarios/spam_fedavg.toml`` for two rounds under each privacy mode and ``fedgrad train --centralized``; the
long numbers and guarantee paragraphs are shortened by hand. ``paillier-masked`` and ``backdoor_success`` came
later (main 4d18d5c), canaries and ``empirical_privacy`` later still (main 49f92a6), in the same unversioned layout:
written by hand from the code that wrote them.
"""
from __future__ import annotations

import json

import pytest

from fedgrad.cli.main import main
from fedgrad.errors import DataError
from fedgrad.results import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, read_metrics, read_summary
from fedgrad.results.schema import (
    SCHEMA_VERSION,
    DecryptorStats,
    DPReport,
    DPRoundReport,
    MaskedReport,
    PaillierReport,
    PrivacyReport,
    RoundRecord,
    RunSummary,
    ThresholdReport,
    from_json,
    to_json,
)
from fedgrad.scenario import Scenario

TIMES = ('"time_s": {"broadcast": 0.0028, "train": 0.0264, "encrypt": 0.0003, "upload": 0.0174, "aggregate": 0.0025, '
         '"decrypt": 0.0, "evaluate": 0.0032, "total": 0.0970}')
SCORES = '"accuracy": 0.688, "precision": 1.0, "recall": 0.0052, "f1": 0.0104, "loss": 0.2935'
COHORT = '"clients_selected": 10, "clients_used": 10, "clients_dropped": 0'
MAIN_LINES = {
    "none": (f'{{"round": 1, {SCORES}, {COHORT}, {TIMES}, "bytes": {{"down": 519136, "up": 518270}}, "attempts": 1, '
             '"model_version": 1, "local": {"loss": 0.0497, "steps": 20.5685}}'),
    "dp": (f'{{"round": 1, {SCORES}, {COHORT}, {TIMES}, "bytes": {{"down": 519526, "up": 518270}}, "attempts": 1, '
           '"model_version": 1, "local": {"loss": 0.0497, "steps": 20.5685}, "privacy": {"epsilon_spent": 0.6409, '
           '"noise_multiplier": 3.1097, "contributors": 10}}'),
    "dp-adaptive": (f'{{"round": 2, {SCORES}, {COHORT}, {TIMES}, "bytes": {{"down": 519526, "up": 518270}}, '
                    '"attempts": 2, "model_version": 2, "local": {}, "privacy": {"epsilon_spent": 0.9, '
                    '"noise_multiplier": 3.2, "contributors": 9, "clip": 1.0, "next_clip": 0.8}}'),
    "paillier": (f'{{"round": 1, {SCORES}, {COHORT}, {TIMES}, "bytes": {{"down": 521786, "up": 1104690}}, '
                 '"attempts": 1, "model_version": 1, "local": {}, "decryptors": {"decryptors_asked": 2.0, '
                 '"verify_s": 0.0576, "partial_s": 1.0365, "prove_s": 0.1568, "combine_s": 0.2446}}'),
    "paillier-trusted dropped": (f'{{"round": 3, {SCORES}, {COHORT}, {TIMES}, "bytes": {{"down": 52178, "up": 11046}}, '
                                 '"attempts": 1, "model_version": 2, "local": {}, "dropped": "aggregate not '
                                 'decrypted: the key holder already decrypted round 3"}'),
    "centralized": (f'{{"round": 1, {SCORES}, "clients_selected": 1, "clients_used": 1, "clients_dropped": 0, '
                    f'{TIMES}, "bytes": {{"down": 0, "up": 0}}, "train_loss": 0.2636}}'),
    "backdoor": (f'{{"round": 2, {SCORES}, "backdoor_success": 0.25, {COHORT}, {TIMES}, "bytes": {{"down": 1, '
                 '"up": 2}, "attempts": 1, "model_version": 2, "local": {"loss": 0.1, "steps": 3.0}}'),
    "canaries": (f'{{"round": 1, {SCORES}, {COHORT}, {TIMES}, "bytes": {{"down": 1, "up": 2}}, "attempts": 1, '
                 '"model_version": 1, "local": {"loss": 0.1, "steps": 3.0}, "canaries": 6}'),
    "empty test set": (f'{{"round": 1, "accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0, "loss": null, '
                       f'{COHORT}, {TIMES}, "bytes": {{"down": 1, "up": 2}}, "attempts": 1, "model_version": 1, '
                       '"local": {}}'),
}

TOTALS = ('"scenario": "spam_fedavg", "run_dir": "runs/spam_fedavg-20261204-043406", "started": '
          '"2026-12-04T04:34:06+00:00", "finished": "2026-12-04T04:34:07+00:00", "wall_time_s": 1.6425, "rounds": 2, '
          '"final": {"accuracy": 0.9338, "precision": 0.9869, "recall": 0.7994, "f1": 0.8833, "loss": 0.0454}, '
          '"time_s": {"broadcast": 0.0305, "train": 0.0457, "encrypt": 0.0004, "upload": 0.0281, "aggregate": 0.0039, '
          '"decrypt": 0.0, "evaluate": 0.0050, "total": 0.1894}, "bytes": {"down": 1038295, "up": 1036560}')
INITIAL = ('"initial": {"accuracy": 0.5169, "precision": 0.3172, "recall": 0.4696, "f1": 0.3787, "loss": 0.2497, '
           '"n": 1209}')
CLIENTS = ('"client_evaluation": {"clients": 10, "accuracy": 0.9445, "loss": 0.0407, "accuracy_min": 0.8281, '
           '"accuracy_max": 0.9924}')
THRESHOLD = ('"mode": "paillier", "key_bits": 512, "decryptors": 3, "threshold": 2, "clip": 1.0, "value_bits": 16, '
             '"max_clients": 10, "max_weight": 4096, "short_randomizer": false, "ciphertexts_per_update": 861, '
             '"update_bytes": 110231, "bytes_per_param": 8.5417, "slots_per_ciphertext": 15')
MASKED = ('"mode": "paillier-masked", "key_bits": 512, "decryptors": 3, "threshold": 2, "clip": 1.0, '
          '"value_bits": 16, "max_clients": 10, "max_weight": 4096, "short_randomizer": false, '
          '"ciphertexts_per_update": 8, "update_bytes": 4194, "bytes_per_param": 8.1, "masked_bytes_per_value": 8, '
          '"delta_bits": 20, "dropped_bits": 0, "key_ciphertexts": 8')
DP = ('"mode": "dp", "placement": "{placement}", "epsilon_target": 1.0, "epsilon_spent": 0.9999, "delta": 0.01, '
      '"noise_multiplier": 3.1097, "clip": 1.0, "accountant": "rdp", "sampling": "fixed", "sampling_rate": 1.0, '
      '"adjacency": "add/remove one client", "rounds_accounted": 2')
WORDS = '"settings": "{settings}", "guarantee": "who must collude ...", "guarantee_short": "{short}"'
MAIN_SUMMARIES = {
    "none": (f'{{{TOTALS}, {INITIAL}, {CLIENTS}, "privacy": {{"mode": "none", '
             f'{WORDS.format(settings="none", short="plaintext updates")}}}, "processes": 2}}'),
    "paillier-trusted": (f'{{{TOTALS}, {INITIAL}, {CLIENTS}, "privacy": {{"mode": "paillier-trusted", "key_bits": 512, '
                         '"clip": 1.0, "value_bits": 16, "max_clients": 10, "ciphertexts_per_update": 517, '
                         '"update_bytes": 66199, "bytes_per_param": 5.1297, "slots_per_ciphertext": 25, '
                         f'{WORDS.format(settings="paillier-trusted, 512-bit key", short="ciphertexts")}}}, '
                         '"processes": 2}'),
    "paillier": (f'{{{TOTALS}, {INITIAL}, {CLIENTS}, "privacy": {{{THRESHOLD}, '
                 f'{WORDS.format(settings="paillier, 2-of-3 decryptors", short="ciphertexts")}}}, "processes": 2}}'),
    "paillier-masked": (f'{{{TOTALS}, {INITIAL}, {CLIENTS}, "privacy": {{{MASKED}, '
                        f'{WORDS.format(settings="paillier-masked, 2-of-3 decryptors", short="masked")}}}, '
                        '"processes": 2}'),
    "canaries": (f'{{{TOTALS}, {INITIAL}, {CLIENTS}, "privacy": {{"mode": "none", '
                 f'{WORDS.format(settings="none", short="plaintext updates")}}}, "empirical_privacy": {{"canaries": 6, '
                 '"norm": 1.0, "sampling_rate": 1.0, "delta": 1e-05, "rounds_observed": 3, "dimension": 1310, '
                 '"participations_mean": 3.0, "final_model": {"epsilon": 4.2, "interval": [2.1, 9.7], "lower_bound": '
                 '0.8, "inserted": [0.41, 0.02], "held_out": [0.001, 0.03], "canaries": 6, "delta": 1e-05}, '
                 '"all_iterates": {"epsilon": null, "interval": [5.0, null], "lower_bound": null, '
                 '"inserted": [0.5, 0.0], "held_out": [0.0, 0.0], "canaries": 6, "delta": 1e-05}}, "processes": 2}'),
    "dp central": (f'{{{TOTALS}, {INITIAL}, {CLIENTS}, "privacy": {{{DP.format(placement="central")}, '
                   f'{WORDS.format(settings="dp (central)", short="DP")}}}, "processes": 2}}'),
    "dp distributed": (f'{{{TOTALS}, {INITIAL}, {CLIENTS}, "privacy": {{{DP.format(placement="distributed")}, '
                       '"noise_share_std": 0.9848, "quantization_range_sigmas": 6.5, '
                       f'"secure_aggregation": {{{THRESHOLD}}}, '
                       f'{WORDS.format(settings="dp (distributed)", short="DP")}}}, "processes": 2}}'),
    "centralized": (f'{{{TOTALS}, "mode": "centralized", "epochs": 2, "initial": {{"accuracy": 0.5169, '
                    '"precision": 0.3172, "recall": 0.4696, "f1": 0.3787, "loss": 0.2497}, "train_examples": 4837, '
                    '"test_examples": 1209, "vocab_size": 12905}'),
}


@pytest.mark.parametrize("kind", MAIN_LINES)
def test_every_round_line_main_wrote_reads_typed_and_is_written_back_unchanged_but_versioned(kind):
    line = json.loads(MAIN_LINES[kind])
    record = from_json(RoundRecord, line, kind)
    assert record.extra == {}  # every key main wrote has its typed home
    written = to_json(record)
    assert written == {"schema_version": SCHEMA_VERSION, **line}
    assert list(written) == ["schema_version", *line]  # the same order, too
    assert from_json(RoundRecord, written, kind) == record


@pytest.mark.parametrize("kind", MAIN_SUMMARIES)
def test_every_summary_main_wrote_reads_typed_and_is_written_back_unchanged_but_versioned(kind):
    document = json.loads(MAIN_SUMMARIES[kind])
    summary = from_json(RunSummary, document, kind)
    assert summary.extra == {} and (summary.privacy is None or summary.privacy.extra == {})
    written = to_json(summary)
    assert written == {"schema_version": SCHEMA_VERSION, **document}
    assert list(written) == ["schema_version", *document]
    assert from_json(RunSummary, written, kind) == summary


def test_records_read_as_their_modes_types():
    dp = from_json(RoundRecord, json.loads(MAIN_LINES["dp-adaptive"]), "dp")
    assert dp.privacy == DPRoundReport(epsilon_spent=0.9, noise_multiplier=3.2, contributors=9, clip=1.0,
                                       next_clip=0.8)
    assert dp.decryptors is None and dp.dropped is None and dp.local == {}
    threshold = from_json(RoundRecord, json.loads(MAIN_LINES["paillier"]), "paillier")
    assert isinstance(threshold.decryptors, DecryptorStats) and threshold.decryptors.partial_s == 1.0365
    assert from_json(RoundRecord, json.loads(MAIN_LINES["paillier-trusted dropped"]), "x").dropped.startswith(
        "aggregate not decrypted")
    assert from_json(RoundRecord, json.loads(MAIN_LINES["empty test set"]), "x").loss is None
    assert from_json(RoundRecord, json.loads(MAIN_LINES["backdoor"]), "x").backdoor_success == 0.25
    assert from_json(RoundRecord, json.loads(MAIN_LINES["none"]), "x").backdoor_success is None
    centralized = from_json(RoundRecord, json.loads(MAIN_LINES["centralized"]), "x")
    assert centralized.train_loss == 0.2636 and centralized.attempts is None and centralized.moved.up == 0

    reports = {kind: from_json(RunSummary, json.loads(text), kind).privacy for kind, text in MAIN_SUMMARIES.items()}
    assert type(reports["none"]) is PrivacyReport and reports["none"].guarantee_short == "plaintext updates"
    trusted = reports["paillier-trusted"]
    assert type(trusted) is PaillierReport and trusted.key_bits == 512 and trusted.slots_per_ciphertext == 25
    assert isinstance(reports["paillier"], ThresholdReport) and reports["paillier"].threshold == 2
    masked = reports["paillier-masked"]
    assert isinstance(masked, MaskedReport) and masked.key_ciphertexts == 8 and masked.slots_per_ciphertext is None
    central, distributed = reports["dp central"], reports["dp distributed"]
    assert isinstance(central, DPReport) and central.secure_aggregation is None and central.noise_share_std is None
    assert isinstance(distributed, DPReport) and distributed.noise_share_std == 0.9848
    assert isinstance(distributed.secure_aggregation, ThresholdReport)
    assert distributed.secure_aggregation.update_bytes == 110231
    assert reports["centralized"] is None
    measured = from_json(RunSummary, json.loads(MAIN_SUMMARIES["canaries"]), "canaries").empirical_privacy
    assert measured is not None and measured.final_model is not None and measured.all_iterates is not None
    assert measured.final_model.interval == (2.1, 9.7) and measured.final_model.inserted == (0.41, 0.02)
    assert measured.all_iterates.epsilon is None and measured.all_iterates.interval == (5.0, None)  # infinite
    assert from_json(RoundRecord, json.loads(MAIN_LINES["canaries"]), "x").canaries == 6


def test_keys_this_version_does_not_know_are_kept_and_written_back():
    line = {**json.loads(MAIN_LINES["none"]), "fairness": {"gini": 0.1}, "schema_version": 1}
    record = from_json(RoundRecord, line, "x")
    assert record.extra == {"fairness": {"gini": 0.1}}
    assert to_json(record) == {"schema_version": 1, **json.loads(MAIN_LINES["none"]), "fairness": {"gini": 0.1}}
    summary = json.loads(MAIN_SUMMARIES["none"])
    summary["privacy"] = {"mode": "hybrid", "mask_bits": 128}
    report = from_json(RunSummary, summary, "x").privacy
    assert type(report) is PrivacyReport and report.mode == "hybrid" and report.extra == {"mask_bits": 128}


def test_newer_schemas_and_wrong_entries_are_data_errors_naming_file_and_key():
    line = json.loads(MAIN_LINES["dp"])
    with pytest.raises(DataError, match=r"metrics\.jsonl:3: schema_version 2; this fedgrad reads versions 0 to 1"):
        from_json(RoundRecord, {**line, "schema_version": SCHEMA_VERSION + 1}, "metrics.jsonl:3")
    with pytest.raises(DataError, match=r"m:1: privacy\.noise_multiplier: expected a number, got 'high'"):
        from_json(RoundRecord, {**line, "privacy": {**line["privacy"], "noise_multiplier": "high"}}, "m:1")
    with pytest.raises(DataError, match=r"m:1: clients_used: expected an int, got True"):
        from_json(RoundRecord, {**line, "clients_used": True}, "m:1")
    with pytest.raises(DataError, match=r"m:1: missing 'time_s'"):
        from_json(RoundRecord, {key: value for key, value in line.items() if key != "time_s"}, "m:1")
    with pytest.raises(DataError, match=r"m:1: expected a JSON object, got list"):
        from_json(RoundRecord, [], "m:1")


def test_a_run_directory_from_before_versioning_reads_and_re_renders(tmp_path):
    """``fedgrad report`` on a finished run main wrote: the typed reader takes its files as they are."""
    run_dir = tmp_path / "spam_fedavg-20261204-043406"
    run_dir.mkdir()
    scenario = Scenario.from_dict({"name": "spam_fedavg", "privacy": {"mode": "dp"}})
    (run_dir / CONFIG_FILE).write_text(scenario.to_toml())
    second = {**json.loads(MAIN_LINES["dp"]), "round": 2, "accuracy": 0.9338,
              "privacy": {"epsilon_spent": 0.9999, "noise_multiplier": 3.1097, "contributors": 10}}
    (run_dir / METRICS_FILE).write_text(MAIN_LINES["dp"] + "\n" + json.dumps(second) + "\n")
    (run_dir / SUMMARY_FILE).write_text(json.dumps(json.loads(MAIN_SUMMARIES["dp central"]), indent=2) + "\n")

    records, summary = read_metrics(run_dir), read_summary(run_dir)
    assert [record.round for record in records] == [1, 2]
    assert [record.privacy.epsilon_spent for record in records if record.privacy] == [0.6409, 0.9999]
    assert summary is not None and isinstance(summary.privacy, DPReport) and summary.privacy.rounds_accounted == 2

    assert main(["report", str(run_dir)]) == 0
    report = (run_dir / "report.md").read_text()
    assert "| privacy | dp (central); who must collude ... |" in report
    assert "| before training | 51.69% | 31.72% | 46.96% | 37.87% | 0.2497 |" in report
    assert "| final | 93.38% | 98.69% | 79.94% | 88.33% | 0.0454 |" in report
    assert "| 2 | 93.38% | 100.00% | 0.52% | 1.04% | 0.2935 | 10 / 10 |" in report
    assert (run_dir / "accuracy_per_round.png").is_file() and "![accuracy per round]" in report
    assert json.loads((run_dir / SUMMARY_FILE).read_text()) == json.loads(MAIN_SUMMARIES["dp central"])  # untouched
