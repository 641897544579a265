"""The coordinator against its own clients (issue 21): attacks that go through what a client does on the
coordinator's word, played against real client code and real decryptors.

``redteam.py`` attacks the decryptors with clients that return a fixed delta. Here the clients are the platform's
own :class:`~client.trainer.LocalTrainer` on their own shards: they train on the model, settings and seed a task
carries and encode as its announcement asks, exactly as ``fedgrad client`` does. The coordinator holds its mode's
aggregation, the k in-process decryptors' handle (``LocalDecryptors``), and everything it puts in a task: run id,
round, cohort, announcement (mode, key, parameters), model, training settings and seed. A client it colludes with
hands it its own update.

Each attack runs against a :class:`ClientFederation` whose clients are either *unpinned* (no run policy: they do
what the task says, and the decryptors hold only their own ``min_clients``; the outcome records what succeeds) or
*pinned* to the operator's
:class:`~fedgrad.policy.RunPolicy`, with decryptors holding the policy's run, ``min_clients`` and cohort fraction
(each attack must fail). ``succeeded`` means the coordinator formed a vector within half a quantization step of the
victim's update in every coordinate (``redteam.Victim``).

The attacks: (10) no announcement, so the update travels in plaintext; (11) a key the coordinator made; (12)
``epochs = 0`` sent to everyone but the victim; (13) the same model and seeds re-issued to the cohort minus the
victim, and two releases differenced; (14) a cohort of which the coordinator claims all but the victim and two
colluders dropped; under distributed DP each also announces a noise share of 0.
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import phe

from client.trainer import LocalTrainer, TrainResult
from fedgrad.crypto import SecureAggConfig, public_key_to_bytes
from fedgrad.crypto.masked import MaskedScheme, MaskedSum
from fedgrad.crypto.quantize import dequantize, quantize, scale
from fedgrad.crypto.schemes import make_scheme
from fedgrad.crypto.wire import load_payload
from fedgrad.data import Shard
from fedgrad.errors import FedgradError
from fedgrad.experiments.redteam import SUCCESS_STEPS, AttackOutcome, LocalDecryptors, Victim
from fedgrad.metrics import PhaseTimer
from fedgrad.modes.base import Aggregation, ClientPrivacy, EncodingRefused, Manifest, UpdateAccumulator
from fedgrad.modes.paillier import ThresholdAggregation
from fedgrad.modes.plain import PlainAccumulator
from fedgrad.privacy.clipping import clip_update
from fedgrad.protocol import (
    Announcement,
    Encoding,
    Rejected,
    RoundCohort,
    TaskConfig,
    TrainTask,
    WeightedSum,
    model_digest,
)
from fedgrad.scenario import Scenario
from fedgrad.training import client_seed

PINNED = "pinned"
UNPINNED = "unpinned"


class RecordingTrainer(LocalTrainer):
    """The victim's own client code, which also keeps every delta it trained: the scoring reference only."""

    def __init__(self, privacy: ClientPrivacy) -> None:
        super().__init__(privacy=privacy)
        self.trained: list[dict[str, np.ndarray]] = []

    def train(self, shard: Shard, config: TaskConfig, global_model: Mapping[str, np.ndarray]) -> TrainResult:
        result = super().train(shard, config, global_model)
        self.trained.append(result.delta)
        return result


@dataclass
class ClientFederation:
    """Real clients, real decryptors, and what the coordinator holds (see the module docstring)."""

    mode: str                          # the announced mode: "paillier" or "dp" (distributed)
    aggregation: Aggregation           # ThresholdAggregation, or a DPAggregation around one
    decryptors: LocalDecryptors
    trainers: Mapping[str, LocalTrainer]
    shards: Mapping[str, Shard]
    model: Mapping[str, np.ndarray]
    specs: Manifest
    config: TaskConfig                 # the honest training settings
    run_id: str
    pinned: bool
    victim: str
    colluders: tuple[str, ...]         # clients that hand the coordinator their own updates
    seed: int = 0
    rounds: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def secure(self) -> ThresholdAggregation:
        inner = getattr(self.aggregation, "_inner", self.aggregation)
        assert isinstance(inner, ThresholdAggregation)
        return inner

    @property
    def cfg(self) -> SecureAggConfig:
        return self.secure.cfg

    @property
    def distributed_dp(self) -> bool:
        return self.aggregation is not self.secure

    @property
    def tensor_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.specs)

    def weight(self, client_id: str) -> int:
        """What a client's update is multiplied by in a release: its capped example count (1 under DP)."""
        return 1 if self.distributed_dp else min(len(self.shards[client_id]), self.cfg.max_weight)

    def config_for(self, client_id: str, round: int, **train: Any) -> TaskConfig:
        """The task settings the coordinator sends: the honest ones (``train`` changed), with its own seed."""
        return self.config.for_client(client_seed(self.seed, round, client_id), train)

    def open(self, round: int, cohort: Sequence[str]) -> UpdateAccumulator:
        """A round of ``cohort`` whose task the coordinator names as the platform does: the honest settings and
        the model it sends."""
        weights = {member: float(len(self.shards[member])) for member in cohort}
        return self.aggregation.new_accumulator(self.specs, RoundCohort(
            round, weights, self.run_id, 1, settings_digest=self.config.settings_digest(),
            model_digest=model_digest({name: self.model[name] for name in self.tensor_names})))

    def send(self, client_id: str, round: int, announcement: Announcement | None, config: TaskConfig,
             model: Mapping[str, np.ndarray] | None = None) -> tuple[bytes, bytes, Encoding] | str:
        """A TRAIN task to one client (with ``model``, another model than the round's): its encoded update
        (payload, signature, encoding), or its refusal."""
        task = TrainTask(round, round, round - 1, float(len(self.shards[client_id])), config, tuple(self.specs),
                         announcement, self.run_id, len(self.shards[client_id]))
        try:
            update = self.trainers[client_id].train_update(client_id, self.shards[client_id], task,
                                                           dict(self.model if model is None else model))
        except EncodingRefused as refusal:
            return f"{type(refusal).__name__}: {refusal}"
        return update.encoded.payload, update.encoded.signature, update.encoded.encoding

    def reference(self, client_id: str, config: TaskConfig) -> np.ndarray:
        """A colluding client's update under ``config`` (the coordinator's seed), clipped as the mode clips it:
        what the colluder hands over."""
        return self._encoded(LocalTrainer().train(self.shards[client_id], config, self.model).delta)

    def victim_update(self, *, clipped: bool = True) -> np.ndarray | None:
        """Scoring only (no attack reads it): the update the victim's own code last trained, clipped as the mode
        clips it (``clipped``); None when it trained nothing."""
        victim = self.trainers[self.victim]
        assert isinstance(victim, RecordingTrainer)
        return self._encoded(victim.trained[-1], clipped=clipped) if victim.trained else None

    def _encoded(self, delta: Mapping[str, np.ndarray], *, clipped: bool = True) -> np.ndarray:
        if self.distributed_dp and clipped:
            delta, _ = clip_update(dict(delta), float(self.aggregation.config.clip))  # type: ignore[attr-defined]
        return np.concatenate([np.asarray(delta[name], dtype=np.float64).reshape(-1) for name in self.tensor_names])

    def flat(self, released: WeightedSum) -> np.ndarray:
        return np.concatenate([np.asarray(released.total[name], dtype=np.float64).reshape(-1)
                               for name in self.tensor_names])


def _noiseless(federation: ClientFederation, announcement: Announcement | None) -> Announcement | None:
    """``announcement`` with its DP noise share set to 0 (distributed DP), as the attacks send it."""
    if announcement is None or "noise_std" not in announcement.params:
        return announcement
    return dataclasses.replace(announcement, params={**announcement.params, "noise_std": 0.0})


@dataclass
class _Round:
    accumulator: UpdateAccumulator
    refusals: list[str]
    released: WeightedSum | None = None


def _run_round(federation: ClientFederation, round: int, cohort: Sequence[str], *, fold: Sequence[str] | None = None,
               configs: Mapping[str, TaskConfig] | None = None) -> _Round:
    """Announce ``cohort`` (noise share 0 under DP), send each member its task (``configs`` or honest settings
    with the coordinator's seed), fold in the uploads of ``fold`` (all by default) and ask for the release."""
    accumulator = federation.open(round, cohort)
    announcement = _noiseless(federation, accumulator.announcement)
    refusals: list[str] = []
    for client_id in cohort:
        config = (configs or {}).get(client_id) or federation.config_for(client_id, round)
        answer = federation.send(client_id, round, announcement, config)
        if isinstance(answer, str):
            refusals.append(answer)
            continue
        if fold is not None and client_id not in fold:
            continue
        payload, signature, _ = answer
        try:
            accumulator.add(client_id, float(len(federation.shards[client_id])), payload, signature,
                            len(federation.shards[client_id]))
        except Rejected as rejected:
            refusals.append(f"{rejected.kind.name}: {rejected}")
    refusals += [f"decryptor {index} refused {what}: {refusal.kind.name}: {refusal}"
                 for index, what, refusal in federation.decryptors.refusals(federation.run_id, round, 1)]
    try:
        released = accumulator.finalize(PhaseTimer())
    except FedgradError as error:
        refusals.append(f"{type(error).__name__}: {error}")
        released = None
    report = accumulator.round_report()
    if released is None and report.dropped is not None:
        refusals.append(report.dropped)
    return _Round(accumulator, refusals, released)


def _outcome(name: str, federation: ClientFederation, reference: np.ndarray | None,
             candidates: Sequence[np.ndarray], refusals: Sequence[str], detail: str) -> AttackOutcome:
    victim = Victim(federation.victim, reference if reference is not None else np.zeros(federation.cfg.n_params),
                    federation.cfg)
    error = min((victim.error(candidate) for candidate in candidates), default=None) if reference is not None \
        else None
    refusal = "; ".join(dict.fromkeys(refusals)) or None
    return AttackOutcome(name, PINNED if federation.pinned else UNPINNED, error is not None and error < SUCCESS_STEPS,
                         refusal, error, detail)


# ---- (10) no announcement: plaintext ---------------------------------------------------------------------------


def attack_plaintext(federation: ClientFederation) -> AttackOutcome:
    """A TRAIN task without a privacy announcement: the client's own code sends the delta in plaintext."""
    name = "no announcement: plaintext update"
    round = next(federation.rounds)
    config = federation.config_for(federation.victim, round)
    answer = federation.send(federation.victim, round, None, config)
    if isinstance(answer, str):
        return _outcome(name, federation, None, [], [answer], "the client refused to send its update")
    payload, _, encoding = answer
    tensors = PlainAccumulator(federation.specs).tensors(payload)
    candidate = np.concatenate([tensors[n].astype(np.float64).reshape(-1) for n in federation.tensor_names])
    return _outcome(name, federation, federation.victim_update(clipped=False), [candidate],
                    [], f"the client sent its update as {encoding.name}: the coordinator read it alone, in one round")


# ---- (11) the coordinator's own key -----------------------------------------------------------------------------


def attack_own_key(federation: ClientFederation) -> AttackOutcome:
    """The round's announcement with a public key the coordinator generated itself (its private key kept)."""
    name = "a key the coordinator made"
    round = next(federation.rounds)
    accumulator = federation.open(round, sorted(federation.trainers))
    honest = _noiseless(federation, accumulator.announcement)
    assert honest is not None
    public, private = phe.generate_paillier_keypair(n_length=int(federation.secure.public_key.n).bit_length())
    forged = dataclasses.replace(honest, public_key=public_key_to_bytes(public))
    config = federation.config_for(federation.victim, round)
    answer = federation.send(federation.victim, round, forged, config)
    if isinstance(answer, str):
        return _outcome(name, federation, None, [], [answer], "the client refused to encrypt to that key")
    payload, _, encoding = answer
    cfg = federation.cfg
    sums, total = _decrypt_alone(cfg, public, private, payload, encoding, federation.run_id, round)
    candidate = dequantize(cfg, sums) / (total or 1)
    return _outcome(name, federation, federation.victim_update(), [candidate], [],
                    "the client encrypted to the coordinator's key; its private key decrypted the update alone")


def _decrypt_alone(cfg: SecureAggConfig, public: phe.PaillierPublicKey, private: phe.PaillierPrivateKey,
                   payload: bytes, encoding: Encoding, run_id: str, round: int) -> tuple[np.ndarray, int | None]:
    """One client's (Σ n·q, n) read with the private key of the key it encrypted to: its ciphertexts decrypted,
    or under the hybrid encoding its mask's key decrypted and its masked vector unmasked with it."""
    if encoding is Encoding.PAILLIER_MASKED:
        masked = MaskedScheme(cfg, public)
        upload = masked.split(payload)
        keys = load_payload(upload.key_payload, pub=public, fingerprint=masked.fingerprint,
                            count=masked.n_ciphertexts).ciphertexts
        alone = MaskedSum(masked, run_id, round)
        alone.add("victim", upload.masked)
        return alone.unmask([int(private.raw_decrypt(int(c))) for c in keys])
    scheme = make_scheme(cfg, public)
    ciphertexts = load_payload(payload, pub=public, fingerprint=cfg.fingerprint(public.n),
                               count=scheme.n_ciphertexts).ciphertexts
    return scheme.decode([int(private.raw_decrypt(int(c))) for c in ciphertexts], 1)


# ---- (12) epochs = 0 to everyone but the victim -----------------------------------------------------------------


def attack_zero_others(federation: ClientFederation) -> AttackOutcome:
    """An honest, fully signed round whose members other than the victim were told to train 0 epochs."""
    name = "epochs = 0 to everyone but the victim"
    round = next(federation.rounds)
    cohort = sorted(federation.trainers)
    configs = {member: federation.config_for(member, round, epochs=0) for member in cohort
               if member != federation.victim}
    played = _run_round(federation, round, cohort, configs=configs)
    reference = federation.victim_update()
    candidates = ([federation.flat(played.released) / federation.weight(federation.victim)]
                  if played.released is not None else [])
    return _outcome(name, federation, reference, candidates, played.refusals,
                    "the others' deltas were zero, so the decryptors' genuine release was the victim's update")


# ---- (13) the same model and seeds re-issued without the victim -------------------------------------------------


def attack_reissue(federation: ClientFederation) -> AttackOutcome:
    """Round A: everyone. Round B: the same model and per-client seeds, everyone but the victim; B − A."""
    name = "same model and seeds re-issued without the victim"
    cohort = sorted(federation.trainers)
    first = next(federation.rounds)
    configs = {member: federation.config_for(member, first) for member in cohort}
    a = _run_round(federation, first, cohort, configs=configs)
    rest = [member for member in cohort if member != federation.victim]
    b = _run_round(federation, next(federation.rounds), rest, configs=configs)
    candidates = ([(federation.flat(a.released) - federation.flat(b.released))
                   / federation.weight(federation.victim)]
                  if a.released is not None and b.released is not None else [])
    return _outcome(name, federation, federation.victim_update(),
                    candidates, a.refusals + b.refusals,
                    "training is a function of the model and the seed the task carries: the two releases differ "
                    "by the victim's update exactly")


# ---- (14) claimed dropouts: victim + colluders ------------------------------------------------------------------


def attack_claimed_dropouts(federation: ClientFederation) -> AttackOutcome:
    """Announce the whole cohort, fold in only the victim and the colluding clients, claim the rest dropped, and
    subtract the colluders' updates (which they hand over) from the release."""
    name = "claimed dropouts: victim + colluders"
    round = next(federation.rounds)
    cohort = sorted(federation.trainers)
    played = _run_round(federation, round, cohort, fold=[federation.victim, *federation.colluders])
    reference = federation.victim_update()
    candidates = []
    if played.released is not None:
        cfg = federation.cfg
        known = np.zeros(cfg.n_params)
        for colluder in federation.colluders:  # each colluder's update as it quantized it, times its weight
            update = federation.reference(colluder, federation.config_for(colluder, round))
            known += quantize(cfg, update, 1.0) / scale(cfg) * federation.weight(colluder)
        candidates.append((federation.flat(played.released) - known) / federation.weight(federation.victim))
    return _outcome(name, federation, reference, candidates, played.refusals,
                    f"{1 + len(federation.colluders)} contributors out of an announced cohort of {len(cohort)} met "
                    "the decryptors' min_clients; the colluders' own updates subtracted from the sum left the "
                    "victim's")


CLIENT_ATTACKS: dict[str, Callable[[ClientFederation], AttackOutcome]] = {
    "plaintext": attack_plaintext,
    "own-key": attack_own_key,
    "zero-others": attack_zero_others,
    "reissue": attack_reissue,
    "claimed-dropouts": attack_claimed_dropouts,
}


def client_federation(directory: Path, scenario: Scenario, shards: Mapping[str, Shard], vocab_size: int, *,
                      pinned: bool, victim: str, colluders: tuple[str, ...], run_id: str = "redteam-clients",
                      key_from: LocalDecryptors | None = None) -> ClientFederation:
    """Real clients on ``shards`` with their own identities, a dealer's t-of-k key in k in-process decryptors,
    and the coordinator's side of ``scenario``'s mode. ``pinned``: the operator's run policy for ``scenario`` is
    given to every client and decryptor (run ``run_id``); otherwise clients and decryptors take the coordinator's
    word, with the decryptors' ``min_clients`` the scenario's. ``key_from``: decryptors whose key shares to reuse
    (a dealer's key of a real size takes long to make)."""
    from fedgrad.crypto.threshold import KeySet
    from fedgrad.experiments.redteam import enroll_clients, local_decryptors
    from fedgrad.models import model_from_config
    from fedgrad.modes.resolve import privacy_mode
    from fedgrad.policy import DEFAULT_MIN_FRACTION, make_policy, policy_min_clients, task_settings
    from server.tasks import ModelPayload

    privacy, fed = scenario.privacy, scenario.federation
    identities, enrollment = enroll_clients(directory / "clients", shards)
    min_clients = policy_min_clients(scenario) if pinned else fed.min_clients
    min_fraction = DEFAULT_MIN_FRACTION if pinned else 0.0
    pinned_run = run_id if pinned else None
    settings = task_settings(scenario, vocab_size).settings_digest() if pinned else None
    decryptors = (key_from.reconfigured(directory / "decryptors", enrollment, min_clients=min_clients,
                                        min_fraction=min_fraction, run_id=pinned_run, settings_digest=settings)
                  if key_from is not None
                  else local_decryptors(directory / "decryptors", key_bits=privacy.key_bits,
                                        parties=privacy.decryptors, threshold=privacy.threshold,
                                        enrollment=enrollment, min_clients=min_clients,
                                        insecure_key_bits=privacy.insecure_key_bits, min_fraction=min_fraction,
                                        run_id=pinned_run, settings_digest=settings))
    policy_path = None
    if pinned:
        policy = make_policy(scenario, vocab_size, KeySet.from_json(decryptors.key_set.to_json()), run=run_id)
        policy_path = directory / "policy.json"
        policy.save(policy_path)
    client_privacy = ClientPrivacy(allow_insecure_keys=privacy.insecure_key_bits, identity_dir=identities,
                                   enrollment=enrollment, policy=policy_path)
    model = model_from_config(scenario.model, vocab_size, seed=scenario.seed).state_dict()
    aggregation = privacy_mode(scenario, decryptors).aggregation(model)
    return ClientFederation(
        mode=privacy.mode, aggregation=aggregation, decryptors=decryptors,
        # colluders train reproducibly on the coordinator's seed, so that it knows their updates
        trainers={client_id: RecordingTrainer(client_privacy) if client_id == victim
                  else LocalTrainer(privacy=dataclasses.replace(client_privacy, training_seed=scenario.seed)
                                    if client_id in colluders and pinned else client_privacy)
                  for client_id in shards}, shards=shards,
        model=model, specs=ModelPayload.encode(0, model).specs,
        config=TaskConfig.from_scenario(scenario, vocab_size), run_id=run_id, pinned=pinned, victim=victim,
        colluders=colluders, seed=scenario.seed)


def run_client_attacks(directory: Path, scenario: Scenario, shards: Mapping[str, Shard], vocab_size: int, *,
                       victim: str, key_from: LocalDecryptors | None = None) -> list[AttackOutcome]:
    """Every attack of this module against ``scenario``'s clients on ``shards`` (at least three), each on a fresh
    federation, without a run policy and then pinned to one; each outcome's name says which."""
    colluders = tuple(client for client in shards if client != victim)[:2]
    outcomes = []
    for pinned in (False, True):
        for name, attack in CLIENT_ATTACKS.items():
            federation = client_federation(directory / (PINNED if pinned else UNPINNED) / name, scenario, shards,
                                           vocab_size, pinned=pinned, victim=victim, colluders=colluders,
                                           key_from=key_from)
            try:
                outcome = attack(federation)
            finally:
                federation.aggregation.close()
            label = "run policy" if pinned else "no run policy"
            outcomes.append(dataclasses.replace(outcome, name=f"{outcome.name} ({label})"))
    return outcomes
