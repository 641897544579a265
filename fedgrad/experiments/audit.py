"""The leakage audit: how much of one client's email can the coordinator read from what it observes?

The book shows that in plain FedAvg the server reads Bob's "my computer password is pizza" off his update:
with a bag-of-words model only the embedding rows of the words Bob used move. This module turns that into a
measurement, one privacy mode at a time:

1. **Plant** a canary email (pseudo-words made by ``make_canary``, found nowhere in the corpus) ``copies``
   times in one client's shard. ``copies`` defaults to ``data.min_count``, the number of training emails a word
   needs to enter the vocabulary, so the canary words get vocabulary ids exactly as they would if the email
   were really in that client's mailbox; they are appended after the scenario's vocabulary so every other id
   stays as the federation has it (a ``data.max_vocab`` cap is not re-applied: the canary comes on top). A
   canary outside the vocabulary would map to the unknown-word id and the audit would measure nothing.
2. **Train one round** in this process with the platform's own code: every client of the round's cohort runs
   ``fedgrad.training.train_local`` from the scenario's initial global model with the seed the coordinator
   would give it (``fedgrad.training.client_seed``).
3. **Observe** what the coordinator holds in each mode by running the platform's own pieces in this process:
   each client's payload from its privacy mode's ``encode`` (plain deltas; Paillier ciphertexts, signed under
   ``paillier``; clipped, possibly noised and encrypted DP updates) and the coordinator's round accumulator from
   the mode's ``aggregation`` (key holder, decryptors over a freshly dealt key, noise and ledger included), which
   releases the sum (``fedgrad.modes``). Under encryption the individual observation is what the coordinator can
   decrypt with the key material it finds among its own objects (``fedgrad.experiments.redteam``): every update
   under ``paillier-trusted`` (the key holder lives in its process), nothing under ``paillier`` or
   ``paillier-masked``. Under those modes the red team's active coordinator also plays every attack on the canary
   client's update, and the report puts the outcomes side by side.
4. **Attack** every observation with ``recover_words`` and score it with ``audit_score``: canary words
   recovered, their share (true-positive rate), the false-positive rate, and the share that naming as many words
   at random would hit (chance).

Attacks, each applied where it makes sense and each naming the same ``NAMED_WORDS`` words, so that chance (naming
as many at random: ``NAMED_WORDS / vocabulary``) is the same small number for all: *most changed* (the rows that
moved most); *rarest changed* (among the rows that moved, the rarest words first, by how often they occur in the
training data, which whoever built the vocabulary knows; then the most changed: a rare word that moved points at
the few clients who use it); *rarest only this client changed* (possible only when the attacker knows every
other client's update: words nobody else in the cohort used this round); *unseen words that moved together*
(``comoving_groups``: in a bag-of-words model, words that occur in exactly the same emails receive identical
gradients at every step, so a repeated private email's own words move by the same amount, in the aggregate too;
among the words absent from the coordinator's own data (its test split) it names such groups, the most changed
per occurrence first: the secret sharer's repeated secret of Carlini et al., USENIX Security 2019). Each reports
its true-positive rate (canary words named) and false-positive rate (other words named). Under DP the noise's
standard deviation is public, so "moved" means by more than ``NOISE_THRESHOLD`` standard deviations: the attack
that reads the canary off a plain update is then run, unchanged otherwise, against the noise (and no two rows
move together any more).

The directory ``<output.dir>/audit-<timestamp>/`` receives ``audit.json`` (every number) and ``report.md``,
rendered from it alone, so ``fedgrad report`` can redraw it.
"""
from __future__ import annotations

import itertools
import json
import math
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from fedgrad.data import Shard, Vocabulary, unique_tokens
from fedgrad.errors import ConfigError, DataError
from fedgrad.experiments.compare.grid import PrivacySetting
from fedgrad.experiments.redteam import (
    AttackOutcome,
    Coordinator,
    HonestClient,
    LocalDecryptors,
    Victim,
    decrypt_uploads,
    enroll_clients,
    local_decryptors,
    run_attacks,
    short_reason,
)
from fedgrad.experiments.redteam_clients import run_client_attacks
from fedgrad.files import write_atomic
from fedgrad.metrics import PhaseTimer
from fedgrad.models import model_from_config
from fedgrad.modes.base import Aggregation, ClientPrivacy
from fedgrad.modes.dp import DPMode
from fedgrad.modes.paillier import ThresholdAggregation
from fedgrad.modes.paillier_common import unflatten
from fedgrad.modes.paillier_trusted import PaillierAggregation
from fedgrad.modes.resolve import encode_update, privacy_mode
from fedgrad.privacy import Canary, audit_score, clip_update, make_canary, plant_canary, recover_words
from fedgrad.protocol import EncodedUpdate, Encoding, RoundCohort, TaskConfig, TrainTask
from fedgrad.results import create_run_dir, format_bytes, read_document
from fedgrad.results.schema import DPReport, PrivacyReport, record_dict
from fedgrad.scenario import Scenario, load_scenario
from fedgrad.training import client_seed, train_local
from fedgrad.transport.codec import decode_tensors
from server.strategies import ClientInfo, strategy_for
from server.tasks import ModelPayload

AUDIT_JSON = "audit.json"
REPORT_FILE = "report.md"
DEFAULT_PRIVACY = "none,paillier-trusted,paillier,paillier-masked,dp:1,dp:8"
#: Every spam model keeps one embedding row per vocabulary word under this name: the rows the attack reads.
EMBEDDING_KEY = "embedding.weight"
#: The audit trains round 1, from the initial global model: the book's demonstration.
ROUND = 1
#: The run id the audited round is signed for (``paillier`` clients sign it).
RUN_ID = "audit"
#: Under noise, a row counts as changed when it moved by more than this many noise standard deviations
#: (a false alarm on any one row has probability 0.27% for one value per row).
NOISE_THRESHOLD = 3.0
#: Words every attack names: a small fixed number (four times the default canary's five words), so that chance,
#: naming as many at random, is small and the same for every attack.
NAMED_WORDS = 20
#: Two words "moved together" when their rows' changes agree to this relative tolerance: words that occur in exactly
#: the same emails get identical gradients, so their changes differ only by the float32 rounding of the weights
#: and a secure mode's fixed-point quantum (both below 1e-6 of the change on the spam scenarios).
COMOVING_RTOL = 1e-5

StateDict = dict[str, np.ndarray]


# ---- the planted federation and its round ----------------------------------------------------------------------


@dataclass(frozen=True)
class PlantedData:
    """The scenario's shards with the canary planted in ``shards[client]``, and the vocabulary that knows it."""

    vocab: Vocabulary
    shards: list[Shard]
    canary: Canary
    client: int
    copies: int
    canary_ids: tuple[int, ...]
    public_counts: np.ndarray   # how often each word occurs in the test split: data the coordinator holds itself

    @property
    def word_counts(self) -> np.ndarray:
        """How often each vocabulary word occurs in the training shards (canary copies included): what whoever
        built the vocabulary knows, the attacker's measure of how rare a word is."""
        ids = np.concatenate([shard.ids.ravel() for shard in self.shards])
        return np.bincount(ids, minlength=len(self.vocab))[: len(self.vocab)]


def plant(scenario: Scenario, *, n_words: int, client: int = 0, copies: int | None = None) -> PlantedData:
    """Build the scenario's dataset and plant the canary (step 1 of the module docstring)."""
    if not 0 <= client < scenario.federation.clients:
        raise ConfigError(f"--canary-client: must be in [0, {scenario.federation.clients - 1}] (got {client})")
    copies = scenario.data.min_count if copies is None else copies
    if copies < scenario.data.min_count:
        raise ConfigError(f"--canary-copies: the canary words enter the vocabulary only with at least "
                          f"data.min_count = {scenario.data.min_count} copies (got {copies})")
    dataset = scenario.build_dataset()
    canary = make_canary(scenario.seed, n_words, exclude=dataset.vocab.words)
    vocab = Vocabulary([*dataset.vocab.to_dict()["words"], *canary.words])
    tokens = unique_tokens(canary.text)
    missing = [word for word in canary.words if word not in tokens[: scenario.data.max_len]]
    if missing:
        raise DataError(f"canary words {missing} do not survive tokenization with max_len "
                        f"{scenario.data.max_len}; the audit would measure nothing")
    ids = tuple(vocab.encode(tokens[: scenario.data.max_len]))
    shards = list(dataset.shards)
    target = shards[client]
    shards[client] = Shard(*plant_canary(target.ids, target.labels, ids, copies=copies))
    public = np.bincount(dataset.test.ids.ravel(), minlength=len(vocab))[: len(vocab)]
    return PlantedData(vocab, shards, canary, client, copies, ids, public)


@dataclass(frozen=True)
class RoundUpdates:
    """Round 1 as the clients computed it: the global model and each cohort member's delta."""

    global_model: StateDict
    deltas: dict[int, StateDict]

    @property
    def cohort(self) -> list[int]:
        return sorted(self.deltas)


def choose_cohort(scenario: Scenario, data: PlantedData) -> list[int]:
    """The canary's client and ``clients_per_round - 1`` others drawn with the scenario's seed (clients with an
    empty shard have nothing to train and are never selected)."""
    others = [k for k, shard in enumerate(data.shards) if len(shard) and k != data.client]
    rng = np.random.default_rng(scenario.seed)
    size = min(scenario.federation.clients_per_round - 1, len(others))
    return sorted([data.client, *(int(k) for k in rng.choice(others, size=size, replace=False))])


def train_round(scenario: Scenario, data: PlantedData, cohort: Sequence[int]) -> RoundUpdates:
    """Every cohort member trains locally from the initial global model, as in the platform's round 1."""
    train, fed = scenario.train, scenario.federation
    model = model_from_config(scenario.model, len(data.vocab), seed=scenario.seed,
                              code_dir=scenario.code_dir).to(train.device)
    global_model = model.state_dict()
    if EMBEDDING_KEY not in global_model:
        raise ConfigError(f"model {scenario.model.name!r} has no {EMBEDDING_KEY!r}: nothing for the audit to read")
    deltas = {}
    for k in tqdm(cohort, desc=f"round {ROUND}: local training", unit="client", file=sys.stderr, leave=False):
        model.load_state_dict(global_model)
        train_local(model, data.shards[k], epochs=train.epochs, batch_size=train.batch_size, lr=train.lr,
                    optimizer=train.optimizer, momentum=train.momentum, seed=client_seed(scenario.seed, ROUND, str(k)),
                    prox_mu=fed.prox_mu)
        trained = model.state_dict()
        deltas[k] = {name: trained[name] - value for name, value in global_model.items()}
    return RoundUpdates(global_model, deltas)


# ---- what the coordinator observes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """One thing the attacker holds, reduced to what the attacks read: one row of values per vocabulary word.

    ``others_touched`` marks the rows some other client's update moved; it exists only when the attacker knows
    every other individual update (then *rows only this client changed* is possible). ``noise_std`` is the
    standard deviation of the Gaussian noise on every value, which DP makes public: a row counts as changed only
    when its change exceeds ``NOISE_THRESHOLD`` standard deviations of the noise on that row.
    """

    name: str
    scope: str                  # "individual" (client k's own update) or "aggregate"
    observed: str               # what exactly the attacker holds, in words
    rows: np.ndarray            # [vocabulary, values per word]
    others_touched: np.ndarray | None = None
    noise_std: float = 0.0

    def changed(self) -> np.ndarray:
        """The rows, with those that did not (detectably) change set to zero."""
        threshold = NOISE_THRESHOLD * self.noise_std * math.sqrt(self.rows.shape[1])
        return np.where((np.linalg.norm(self.rows, axis=1) > threshold)[:, None], self.rows, 0.0)


@dataclass(frozen=True)
class ModeObservation:
    description: str            # what the coordinator receives in this mode, for the report
    views: list[View]
    facts: dict[str, Any]       # the aggregation's own summary (key, noise, guarantee) and what was refused


def observe(scenario: Scenario, data: PlantedData, updates: RoundUpdates, *, aggregate_only: bool = False
            ) -> ModeObservation:
    """Round 1 through the platform's own encoding and aggregation for ``scenario.privacy``, in this process.

    Clients encode their deltas with their privacy mode's ``encode`` for the task the coordinator would
    send; the coordinator side is the mode's ``aggregation`` (its key holder, noise and ledger
    included; under ``paillier`` real decryptors over a freshly dealt key, in this process) folding the payloads
    into one round accumulator and releasing the sum. Nothing travels over gRPC: the bytes are the same, and the
    audit needs only what the coordinator ends up holding. Under encryption the coordinator's individual view is
    what it can decrypt with the key material it finds in its own objects (``fedgrad.experiments.redteam``), and
    under ``paillier-trusted``, ``paillier`` and ``paillier-masked`` the red team's attacks run against it too.
    With ``aggregate_only`` (what ``fedgrad compare`` reads) the coordinator's individual view, its key search and
    the red team are left out: only the released aggregate, and under DP the sum minus the other clients, are
    observed.
    """
    with ExitStack() as stack:
        return _observe(scenario, data, updates, stack, aggregate_only)


def _observe(scenario: Scenario, data: PlantedData, updates: RoundUpdates, stack: ExitStack, aggregate_only: bool
             ) -> ModeObservation:
    k = data.client
    privacy_settings, fed = scenario.privacy, scenario.federation
    model = ModelPayload.encode(0, updates.global_model)
    strategy = strategy_for(scenario)
    instructions = strategy.configure(ROUND, [ClientInfo(str(i), len(data.shards[i])) for i in updates.cohort])
    cohort = RoundCohort(ROUND, {cid: instruction.weight for cid, instruction in instructions.items()}, RUN_ID)
    decryptors, identities, enrollment = None, None, None
    if privacy_mode(scenario).needs_decryptors:
        # the operator's enrollment and the clients' own identities, and a dealer's fresh key for k decryptors
        parties = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fedgrad-audit-parties-")))
        identities, enrollment = enroll_clients(parties / "clients", [str(i) for i in updates.cohort])
        decryptors = local_decryptors(parties, key_bits=privacy_settings.key_bits,
                                      parties=privacy_settings.decryptors, threshold=privacy_settings.threshold,
                                      enrollment=enrollment, min_clients=fed.min_clients,
                                      insecure_key_bits=privacy_settings.insecure_key_bits)
    mode = privacy_mode(scenario, decryptors)
    profile = mode.profile()
    # The replayed round's DP noise (the coordinator's, and distributed clients' shares) is drawn from the
    # scenario's seed, so that an audit is reproducible: it releases nothing, and real runs draw from the OS.
    aggregation = (mode.aggregation(updates.global_model, noise_seed=scenario.seed) if isinstance(mode, DPMode)
                   else mode.aggregation(updates.global_model))
    stack.callback(aggregation.close)
    accumulator = aggregation.new_accumulator(model.specs, cohort)
    privacy = ClientPrivacy(allow_insecure_keys=privacy_settings.insecure_key_bits, identity_dir=identities,
                            enrollment=enrollment, noise_seed=scenario.seed)
    config = TaskConfig.from_scenario(scenario, len(data.vocab))
    payloads = {}
    for task_id, i in enumerate(updates.cohort, start=1):
        cid = str(i)
        task = TrainTask(task_id, ROUND, 0, instructions[cid].weight, config, model.specs, accumulator.announcement,
                         RUN_ID, len(data.shards[i]))
        payloads[i] = encode_update(task, cid, updates.deltas[i], privacy)
        accumulator.add(cid, instructions[cid].weight, payloads[i].payload, payloads[i].signature,
                        len(data.shards[i]))
    released = accumulator.finalize(PhaseTimer())
    assert released is not None, "an honest round's aggregate is released"
    report = aggregation.summary()
    facts: dict[str, Any] = {**record_dict(report), "guarantee": mode.guarantee().full}
    plain = payloads[k].encoding == Encoding.PLAIN
    individual: View | None = None
    if plain and not aggregate_only:
        received = {i: decode_tensors(model.specs, encoded.payload) for i, encoded in payloads.items()}
        individual = View("client update", "individual", f"client {k}'s update as sent, in plaintext",
                          _rows(received[k]), _touched_by_others(received, k))
    elif not aggregate_only:
        if decryptors is None:  # the key holder's own door, asked for one update
            facts["single_update_refused"] = _refusal(aggregation, model, cohort, str(k), payloads[k].payload,
                                                      instructions[str(k)].weight)
        individual = _decrypted_view(aggregation, model, cohort, payloads, k, facts, report,
                                     folded_weights=profile.client_weights == "folded")
        if profile.redteam and not profile.slow:
            facts["redteam"] = _red_team(privacy_settings.mode, aggregation, model, config, data, updates,
                                         instructions, privacy)
        if isinstance(decryptors, LocalDecryptors) and len(updates.cohort) >= 3:  # the attacks through the clients
            parties = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fedgrad-audit-clients-")))
            outcomes = run_client_attacks(parties, scenario, {str(i): data.shards[i] for i in updates.cohort},
                                          len(data.vocab), victim=str(k), key_from=decryptors)
            facts["redteam"] = [*facts.get("redteam", []), *(outcome.to_dict() for outcome in outcomes)]
        if individual is None and "redteam" in facts:
            facts["single_update_refused"] = "; ".join(
                f"{outcome['name']}: {outcome['refusal'].split('; ')[0]}" for outcome in facts["redteam"]
                if outcome["refusal"] and not outcome["succeeded"])
    dp: DPReport | None = None
    if profile.epsilon:
        assert isinstance(report, DPReport), "a mode set by a target ε reports its noise"
        dp = report
    noise_std = dp.noise_multiplier * dp.clip if dp else 0.0  # on the sum
    views = [View("aggregate", "aggregate", f"the released average of {len(released.contributors)} clients' updates",
                  _rows(strategy.aggregate(released)), noise_std=noise_std / released.weight)]
    if individual is not None:
        views.insert(0, individual)
    if dp:
        # DP's adversary knows every other client's clipped update and subtracts it from the released sum.
        others = {i: clip_update(updates.deltas[i], dp.clip)[0] for i in updates.cohort if i != k}
        isolated = {name: released.total[name] - sum(update[name].astype(np.float64) for update in others.values())
                    for name in released.total}
        views.append(View("aggregate minus all other clients", "aggregate",
                          f"the noisy sum minus the {len(others)} other clients' clipped updates", _rows(isolated),
                          _touched_by_others({**others, k: isolated}, k), noise_std))
    facts["key_holder"] = profile.key_holder  # who could decrypt one update: the report's refusal sentence reads it
    sent = f"client {k} sends {format_bytes(len(payloads[k].payload))}"
    return ModeObservation(mode.describe_round(report, client=k, sent=sent), views, facts)


def _decrypted_view(aggregation: Aggregation, model: ModelPayload, cohort: RoundCohort,
                    payloads: Mapping[int, EncodedUpdate], k: int, facts: dict[str, Any], report: PrivacyReport,
                    *, folded_weights: bool) -> View | None:
    """Client ``k``'s update as the coordinator decrypts it with key material found in its own objects (the
    red team's key-material attack); None, and the search recorded in ``facts``, when it finds none.
    ``folded_weights``: clients multiplied their updates by their share of the cohort's weight."""
    decrypted, material = decrypt_uploads(aggregation, {str(i): p.payload for i, p in payloads.items()},
                                          run_id=cohort.run_id, round=cohort.round_number)
    facts["key_material"] = material.describe()
    if decrypted is None:
        return None
    shapes = {spec.name: tuple(spec.shape) for spec in model.specs}
    total = cohort.total_weight
    recovered = {i: unflatten(decrypted[str(i)] / (cohort.weights[str(i)] / total if folded_weights else 1.0),
                              shapes) for i in payloads}
    share_std = (report.noise_share_std or 0.0) if isinstance(report, DPReport) else 0.0
    return View("client update, decrypted by the coordinator", "individual",
                f"client {k}'s update, decrypted with the private key found in the coordinator's own objects "
                f"({material.describe()})", _rows(recovered[k]),
                None if share_std else _touched_by_others(recovered, k), share_std)


def _red_team(mode: str, aggregation: Aggregation, model: ModelPayload, config: TaskConfig, data: PlantedData,
              updates: RoundUpdates, instructions: Mapping[str, Any], privacy: ClientPrivacy
              ) -> list[dict[str, Any]]:
    """Every red-team attack on the canary client's update, played by this mode's coordinator on rounds after the
    audited one (``fedgrad.experiments.redteam``)."""
    names = list(updates.global_model)
    clients = {str(i): HonestClient(str(i), updates.deltas[i], len(data.shards[i]), privacy) for i in updates.cohort}
    if len(clients) < 3:
        return []
    coordinator = Coordinator(mode, aggregation, model.specs, config, clients, run_id=f"{RUN_ID}-redteam",
                              weights={cid: instruction.weight for cid, instruction in instructions.items()},
                              rounds=itertools.count(ROUND + 1))
    inner = aggregation
    assert isinstance(inner, (PaillierAggregation, ThresholdAggregation))
    victim = Victim(str(data.client), np.concatenate([updates.deltas[data.client][n].reshape(-1) for n in names]),
                    inner.cfg)
    return [outcome.to_dict() for outcome in run_attacks(coordinator, victim)]


def _refusal(aggregation: Aggregation, model: ModelPayload, cohort: RoundCohort, client_id: str, payload: bytes,
             weight: float) -> str:
    """Ask for client ``client_id``'s update alone, as an "aggregate" of one; return the refusal."""
    alone = aggregation.new_accumulator(model.specs, cohort)
    alone.add(client_id, weight, payload)
    if alone.finalize(PhaseTimer()) is not None:
        raise AssertionError(f"the key holder decrypted client {client_id}'s update on its own")
    return str(alone.round_report().dropped)


def _rows(update: Mapping[str, np.ndarray]) -> np.ndarray:
    table = np.asarray(update[EMBEDDING_KEY], dtype=np.float64)
    return table.reshape(table.shape[0], -1)


def _touched_by_others(updates: Mapping[int, Mapping[str, np.ndarray]], client: int) -> np.ndarray:
    return np.any([np.any(_rows(update) != 0, axis=1) for i, update in updates.items() if i != client], axis=0)


# ---- the attacks ---------------------------------------------------------------------------------------------------


def comoving_groups(rows: np.ndarray, counts: np.ndarray, unseen: np.ndarray) -> list[np.ndarray]:
    """Groups of at least two rows that moved together, equally frequent in the training data (``counts``) and
    with changes equal to ``COMOVING_RTOL``, of which every word is ``unseen`` (a boolean mask over the rows: the
    words absent from the attacker's own data; a group with one word the attacker has seen elsewhere is no private
    email), in the attacker's order of suspicion: the largest change per occurrence of its words first (an email
    the model has not yet learned keeps moving them; a short private email whose words occur nowhere else is
    learned last). Unchanged rows are no group.

    In a bag-of-words model a word's row receives, at every step, the sum over the batch's emails containing it of
    its count there times the email's score gradient; two words found in exactly the same emails as often get the
    same gradient at every step of every client, so the same change in each update and in any sum of updates.
    Noise (DP) gives every row its own change, and the groups left are accidents.
    """
    norms = np.linalg.norm(rows, axis=1)
    order = np.flatnonzero(norms > 0)
    order = order[np.lexsort((order, rows[order, 0]))]  # rows that agree are neighbours in their first value
    groups: list[list[int]] = []
    for index in order.tolist():
        last = groups[-1][-1] if groups else None
        if (last is not None and counts[last] == counts[index]
                and np.allclose(rows[index], rows[last], rtol=COMOVING_RTOL, atol=0.0)):
            groups[-1].append(index)
        else:
            groups.append([index])
    found = [np.sort(group) for group in groups if len(group) >= 2 and unseen[group].all()]
    return sorted(found, key=lambda group: (-norms[group[0]] / max(int(counts[group[0]]), 1), int(group[0])))


def attacks_for(view: View, named: int, counts: np.ndarray, public_counts: np.ndarray | None = None
                ) -> dict[str, Callable[[Sequence[str]], list[str]]]:
    """The attacks that apply to ``view``, by name (see the module docstring), each naming exactly ``named`` words
    (when fewer rows qualify than that, the rest are the most changed of the others); ``counts``: how often each
    word occurs in the training data (the attacker's measure of rarity); ``public_counts``: how often in the
    attacker's own data (the test split), for the attack on unseen words that moved together."""
    changed = view.changed()

    def fill(first: Sequence[str], words: Sequence[str]) -> list[str]:
        rest = [word for word in recover_words(view.rows, words, top_k=2 * named) if word not in first]
        return [*first, *rest][:named]

    def rarest(rows: np.ndarray) -> Callable[[Sequence[str]], list[str]]:
        def run(words: Sequence[str]) -> list[str]:
            return fill(recover_words(rows, words, top_k=named, rarity=counts), words)
        return run

    applicable = {
        f"{named} most changed": lambda words: recover_words(view.rows, words, top_k=named),
        f"{named} rarest changed": rarest(changed),
    }
    if public_counts is not None:
        def together(words: Sequence[str]) -> list[str]:
            groups = comoving_groups(view.rows, counts, public_counts == 0)
            ids = np.concatenate(groups).tolist() if groups else []
            return fill([words[index] for index in ids[:named]], words)
        applicable[f"{named} unseen words that moved together"] = together
    if view.others_touched is not None:
        applicable[f"{named} rarest only this client changed"] = rarest(
            np.where(view.others_touched[:, None], 0.0, changed))
    return applicable


def attack(view: View, data: PlantedData) -> list[dict[str, Any]]:
    """Every applicable attack on ``view``, each naming ``NAMED_WORDS`` words, scored against the canary."""
    results = []
    counts = data.word_counts
    for name, run_attack in attacks_for(view, NAMED_WORDS, counts, data.public_counts).items():
        guesses = set(run_attack(data.vocab.words))
        score = audit_score(guesses, data.canary.words, len(data.vocab))
        results.append({"attack": name, "guesses": len(guesses),
                        "canary_words_recovered": [word for word in data.canary.words if word in guesses], **score})
    return results


# ---- the experiment ------------------------------------------------------------------------------------------------


def run_audit(scenario_path: Path, overrides: Sequence[str], settings: Sequence[PrivacySetting], *, n_words: int,
              client: int = 0, copies: int | None = None, command: Sequence[str] = ()) -> Path:
    """Plant, train round 1 once, then observe and attack it under each setting (the scenario with that setting's
    ``--set`` values on top of ``overrides``); write ``audit.json`` and ``report.md``; return their directory."""
    scenario = load_scenario(scenario_path, list(overrides))
    variants = {setting: _scenario_for(scenario_path, overrides, setting) for setting in settings}
    planted = planted_round(scenario, n_words=n_words, client=client, copies=copies)
    data, updates, cohort = planted.data, planted.updates, planted.updates.cohort
    modes = []
    for setting, variant in tqdm(variants.items(), desc="observing and attacking", unit="mode", file=sys.stderr,
                                 leave=False):
        observation = observe(variant, data, updates)
        modes.append({
            "setting": setting.label, "mode": setting.mode, "epsilon": setting.epsilon,
            "description": observation.description, "facts": observation.facts,
            "views": [{"name": view.name, "scope": view.scope, "observed": view.observed,
                       "attacks": attack(view, data)} for view in observation.views],
        })
    audit_dir = create_run_dir(Path(scenario.output.dir), "audit")
    document = {
        "kind": "fedgrad-audit",
        "scenario": scenario.name,
        "seed": scenario.seed,
        "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": ["fedgrad", *command],
        "model": scenario.model.name,
        "vocab_size": len(data.vocab),
        "canary": {"text": data.canary.text, "words": list(data.canary.words), "client": data.client,
                   "copies": data.copies, "ids": list(data.canary_ids), "shard_size": len(data.shards[data.client])},
        "cohort": cohort,
        "train": {"epochs": scenario.train.epochs, "batch_size": scenario.train.batch_size, "lr": scenario.train.lr,
                  "optimizer": scenario.train.optimizer},
        "modes": modes,
    }
    write_atomic(audit_dir / AUDIT_JSON, json.dumps(document, indent=2, allow_nan=False) + "\n")
    render_audit_report(audit_dir)
    return audit_dir


def _scenario_for(path: Path, overrides: Sequence[str], setting: PrivacySetting) -> Scenario:
    """The scenario of one ``--privacy`` setting, checked by its privacy mode too."""
    try:
        scenario = load_scenario(path, [*overrides, *setting.overrides()])
        privacy_mode(scenario)
        return scenario
    except ConfigError as exc:
        raise ConfigError(f"--privacy {setting.label}: {exc}") from None


def best(view: dict[str, Any]) -> dict[str, Any]:
    """The view's most successful attack (highest advantage over chance): the audit reports the worst case."""
    return max(view["attacks"], key=lambda result: (result["advantage"], result["recovered"]))


@dataclass(frozen=True)
class PlantedRound:
    """Round 1 of a scenario trained once with the canary planted, ready to be released under any privacy
    setting of the same federation (same data, split, seed and cohort)."""

    data: PlantedData
    updates: RoundUpdates

    def aggregate_leakage(self, scenario: Scenario) -> dict[str, Any]:
        """The best attack on the aggregate that ``scenario``'s privacy mode releases for this round (its own
        aggregation: quantization, noise calibrated for the whole run): ``audit_score``'s fields, the attack's
        name, its guesses and the canary words it recovered."""
        observation = observe(scenario, self.data, self.updates, aggregate_only=True)
        [view] = [view for view in observation.views if view.name == "aggregate"]
        return best({"attacks": attack(view, self.data)})


def planted_round(scenario: Scenario, *, n_words: int, client: int = 0, copies: int | None = None) -> PlantedRound:
    """Plant the canary in ``scenario``'s federation and train round 1 (steps 1 and 2 of the module docstring)."""
    data = plant(scenario, n_words=n_words, client=client, copies=copies)
    cohort = choose_cohort(scenario, data)
    if len(cohort) < 2:
        raise ConfigError("federation.clients_per_round: the audit needs at least 2 clients with data in a round")
    return PlantedRound(data, train_round(scenario, data, cohort))


# ---- the report ------------------------------------------------------------------------------------------------------


def is_audit_dir(path: Path) -> bool:
    return (path / AUDIT_JSON).is_file()


def read_audit(audit_dir: Path) -> dict[str, Any]:
    return read_document(audit_dir, AUDIT_JSON, "fedgrad-audit", "fedgrad audit")


def render_audit_report(audit_dir: Path) -> Path:
    """(Re)write ``report.md`` from ``audit.json``; returns its path."""
    document = read_audit(audit_dir)
    canary = document["canary"]
    sections = [
        "\n".join([
            f"# Leakage audit `{document['scenario']}`",
            "",
            (f"Created {document['created']} by `{' '.join(document['command'])}`; model `{document['model']}`, "
            f"vocabulary of {document['vocab_size']} words, seed {document['seed']}."),
            "",
            (f"The canary email *\"{canary['text']}\"* was planted {canary['copies']} times in client "
            f"{canary['client']}'s shard ({canary['shard_size']} emails with it), enough for its words to enter "
            f"the vocabulary. Clients {', '.join(map(str, document['cohort']))} trained round {ROUND} "
            f"({document['train']['epochs']} local epoch(s), {document['train']['optimizer']} lr "
            f"{document['train']['lr']}) from the initial global model. Only the {len(canary['words'])} "
            "pseudo-words are audited (the prefix words are common). Every attack names the same number of words "
            "(**named**). **TPR** is the share of canary words it named, **FPR** the share of the other words; "
            "**chance** is the TPR of naming as many vocabulary words at random; **advantage** = TPR − chance is "
            "what the observation gave the attacker."),
        ]),
        _summary_table(document),
        *_redteam_section(document),
        *(_mode_section(mode) for mode in document["modes"]),
    ]
    path = audit_dir / REPORT_FILE
    write_atomic(path, "\n\n".join(sections) + "\n")
    return path


def _summary_table(document: dict[str, Any]) -> str:
    lines = ["## Summary (best attack per observation)", "",
             "| mode | observation | scope | attack | named | recovered | TPR | FPR | chance | advantage |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for mode in document["modes"]:
        for view in mode["views"]:
            lines.append(_attack_row(f"`{mode['setting']}`", view, best(view)))
    return "\n".join(lines)


def _redteam_section(document: dict[str, Any]) -> list[str]:
    """The active coordinator's attacks on the canary client's update, the modes side by side."""
    modes = [mode for mode in document["modes"] if mode["facts"].get("redteam")]
    if not modes:
        return []
    attacks = list(dict.fromkeys(outcome["name"] for mode in modes for outcome in mode["facts"]["redteam"]))
    lines = ["## Active coordinator (red team)", "",
             ("The coordinator plays every attack of `fedgrad.experiments.redteam` against the canary client's "
             "update with what it holds in each mode (its aggregation and decrypt path, its files, the cohorts, "
             "round numbers, weights and client ids it chooses, the uploads clients sent it), and under the "
             "threshold modes those of `fedgrad.experiments.redteam_clients` through the clients' own code (the "
             "tasks it sends: announcement, key, settings, seeds, noise), with and without the operator's run "
             "policy. **recovered**: it "
             "obtained the update within half a quantization step in every coordinate; **refused**: what turned "
             "it down. `docs/threat-model.md` explains each attack and what remains."), "",
             "| attack | " + " | ".join(f"`{mode['setting']}`" for mode in modes) + " |",
             "|---|" + "---|" * len(modes)]
    for attack_name in attacks:
        cells = []
        for mode in modes:
            [outcome] = [o for o in mode["facts"]["redteam"] if o["name"] == attack_name] or [None]
            if outcome is None:
                cells.append("not run")
                continue
            reason = short_reason(AttackOutcome(**outcome), 200).replace("|", "\\|")
            verdict = (f"**recovered** ({outcome['recovered_error']:.2g} steps): {reason}" if outcome["succeeded"]
                       else f"refused: {reason}")
            cells.append(verdict)
        lines.append(f"| {attack_name} | " + " | ".join(cells) + " |")
    return ["\n".join(lines)]


def _mode_section(mode: dict[str, Any]) -> str:
    lines = [f"## `{mode['setting']}`", "", mode["description"], ""]
    refusal = mode["facts"].get("single_update_refused")
    if refusal and _key_holder(mode["facts"]) == "decryptors":
        lines += [f"Every attack on the canary client's update alone was refused: *{refusal}*.", ""]
    elif refusal:
        lines += [f"Asked to decrypt the canary client's update on its own, the key holder refused: *{refusal}*.",
                  ""]
    if mode["facts"].get("key_material"):
        lines += [f"Key material in the coordinator's own objects: {mode['facts']['key_material']}.", ""]
    if mode["facts"].get("guarantee"):
        lines += [f"Guarantee: {mode['facts']['guarantee']}.", ""]
    lines += ["| observation | what the attacker holds | attack | named | recovered | TPR | FPR | chance | advantage |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for view in mode["views"]:
        for result in view["attacks"]:
            lines.append(f"| {view['name']} | {view['observed']} | {result['attack']} | {result['guesses']} | "
                         f"{result['recovered']}/{result['total']} | {_percent(result['rate'])} | "
                         f"{_percent(result.get('fpr'))} | {_percent(result['chance_rate'])} | "
                         f"{_points(result['advantage'])} |")
    return "\n".join(lines)


def _key_holder(facts: Mapping[str, Any]) -> str:
    """Who could decrypt one update (``Profile.key_holder``); an audit written before that was recorded tells by its
    threshold aggregation's summary (its decryptors, or distributed DP's ``secure_aggregation``)."""
    if "key_holder" in facts:
        return str(facts["key_holder"])
    return "decryptors" if "decryptors" in facts or "secure_aggregation" in facts else "coordinator"


def _attack_row(label: str, view: dict[str, Any], result: dict[str, Any]) -> str:
    return (f"| {label} | {view['name']} | {view['scope']} | {result['attack']} | {result['guesses']} | "
            f"{result['recovered']}/{result['total']} | {_percent(result['rate'])} | "
            f"{_percent(result.get('fpr'))} | {_percent(result['chance_rate'])} | {_points(result['advantage'])} |")


def _percent(value: float | None) -> str:
    if value is None:  # an audit.json from before false-positive rates were recorded
        return "–"
    return f"{100 * value:.1f}%" if value >= 0.001 or value == 0 else f"{100 * value:.3f}%"


def _points(value: float) -> str:
    return f"{100 * value:+.1f} pts" if not math.isclose(value, 0.0, abs_tol=5e-4) else "0"
