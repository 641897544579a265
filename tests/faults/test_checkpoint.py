"""Checkpoint files on their own: everything in FederationState comes back exactly; damage is named, not
silently used; a state the checkpoint cannot hold fails the first save, not the resume."""
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from fedgrad.protocol import ClientUpdate, WeightedSum
from fedgrad.results.schema import round_record
from server.checkpoint import KEEP, CheckpointError, Checkpoints, load_checkpoint
from server.coordinator import FederationState
from server.strategies import (
    Bulyan,
    FedAdagrad,
    FedAdam,
    FedAvgM,
    FedMedian,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
    QFedAvg,
    Strategy,
)

pytestmark = pytest.mark.faults


def trained_state(seed: int = 0, strategy: Strategy | None = None) -> FederationState:
    """A run three rounds in (FedAdam unless told), its RNG advanced, its server optimiser's state non-zero."""
    rng = np.random.default_rng(seed)
    strategy = strategy or FedAdam(server_lr=0.1)
    model = {"w": rng.standard_normal((4, 3)).astype(np.float32), "b": np.zeros(3, np.float32)}
    for _ in range(3):
        model = strategy.apply(model, {name: rng.standard_normal(v.shape).astype(np.float32)
                                       for name, v in model.items()})
    state = FederationState(global_model=model, rng=rng, strategy=strategy, completed_rounds=3, model_version=3,
                            initial_metrics={"accuracy": np.float64(0.5), "loss": 0.69})
    rng.choice(10, size=4, replace=False)
    return state


STATEFUL: dict[str, Callable[[], Strategy]] = {
    "fedadam": lambda: FedAdam(server_lr=0.1), "fedavgm": lambda: FedAvgM(server_lr=0.5),
    "fedadagrad": lambda: FedAdagrad(server_lr=0.1), "fedyogi": lambda: FedYogi(server_lr=0.1)}
#: Rules over individual updates: stateless, so their checkpoint holds the model, the RNG and the records only.
STATELESS: dict[str, Callable[[], Strategy]] = {
    "qfedavg": lambda: QFedAvg(q=0.5, lipschitz=10.0), "fedmedian": FedMedian,
    "fedtrimmedavg": lambda: FedTrimmedAvg(beta=0.2), "krum": lambda: Krum(f=1),
    "multikrum": lambda: MultiKrum(f=1, m=2), "bulyan": lambda: Bulyan(f=1)}
STRATEGIES = {**STATEFUL, **STATELESS}


def round_updates(model: dict[str, np.ndarray], seed: int) -> WeightedSum:
    """Seven clients' updates for the next round, with the losses QFedAvg reads."""
    rng = np.random.default_rng(seed)
    updates = tuple(ClientUpdate(str(k), 1.0, {name: rng.standard_normal(v.shape).astype(np.float32)
                                               for name, v in model.items()}, {"start_loss": 0.1 * (k + 1)})
                    for k in range(7))
    total = {name: np.asarray(np.sum([u.delta[name] for u in updates], axis=0, dtype=np.float64)) for name in model}
    return WeightedSum(total, 7.0, tuple(u.client_id for u in updates), updates)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_field_round_trips_and_the_run_continues_identically(tmp_path, strategy):
    state = trained_state(strategy=STRATEGIES[strategy]())
    assert bool(state.strategy.state_dict()) == (strategy in STATEFUL)
    scores = {"precision": 0.5, "recall": 0.5, "f1": 0.5, "loss": 0.69}
    records = [round_record(r, {"accuracy": 0.5 + r / 10, **scores}, clients_selected=3, clients_used=3,
                            clients_dropped=0, time_s={"total": 0.1}) for r in (1, 2, 3)]
    Checkpoints(tmp_path).save(state, records)
    fresh = FederationState(global_model={}, rng=np.random.default_rng(99), strategy=STRATEGIES[strategy]())
    checkpoint = Checkpoints(tmp_path).latest()
    checkpoint.restore(fresh)
    assert checkpoint.records == records and fresh.completed_rounds == 3 and fresh.model_version == 3
    assert fresh.initial_metrics == {"accuracy": 0.5, "loss": 0.69}
    for name, value in state.global_model.items():
        np.testing.assert_array_equal(fresh.global_model[name], value)
    for name, value in state.strategy.state_dict().items():
        np.testing.assert_array_equal(fresh.strategy.state_dict()[name], value)
    # The same next draws and the same next server step: the resumed run goes on exactly.
    assert fresh.rng.choice(100, 5).tolist() == state.rng.choice(100, 5).tolist()
    summed = round_updates(state.global_model, seed=5)
    resumed = fresh.strategy.apply(fresh.global_model, fresh.strategy.aggregate(summed))
    original = state.strategy.apply(state.global_model, state.strategy.aggregate(summed))
    for name in original:
        np.testing.assert_array_equal(resumed[name], original[name])


def test_only_the_newest_are_kept_and_damage_falls_back_with_a_warning(tmp_path, caplog, tally):
    state = trained_state()
    checkpoints = Checkpoints(tmp_path)
    for completed in range(1, 5):
        state.completed_rounds = completed
        checkpoints.save(state, [])
    files = checkpoints.files()
    assert [f.name for f in files] == ["round-000004.npz", "round-000003.npz"] and KEEP == 2
    assert all(f.stat().st_mode & 0o077 == 0 for f in files)
    for what, damage in (("truncated checkpoint", lambda data: data[: len(data) // 3]),
                         ("checkpoint with one weight bit flipped", _flip_a_weight_bit),
                         ("empty checkpoint", lambda data: b"")):
        with tally.bad_input(what) as bad:
            files[0].write_bytes(damage(files[0].read_bytes()))
            with pytest.raises(CheckpointError, match=r"round-000004.npz") as caught:
                load_checkpoint(files[0])
            bad.refused(caught.value)
            assert checkpoints.latest().completed_rounds == 3
            assert "round-000004.npz" in caplog.text and "resuming from round-000003.npz" in caplog.text
            state.completed_rounds = 4
            checkpoints.save(state, [])  # the next save replaces the damaged file
            assert checkpoints.latest().completed_rounds == 4


def _flip_a_weight_bit(data: bytes) -> bytes:
    """One bit of the saved global model's weights flipped (bit rot in the one place that matters most)."""
    where = data.index(trained_state().global_model["w"].tobytes()) + 5
    return data[:where] + bytes([data[where] ^ 1]) + data[where + 1:]


def test_a_state_field_that_cannot_be_saved_fails_the_first_save(tmp_path):
    @dataclass
    class WithSocket(FederationState):
        connection: object = None

    state = trained_state()
    extended = WithSocket(**{f: getattr(state, f) for f in state.__dataclass_fields__}, connection=object())
    with pytest.raises(TypeError, match=r"FederationState.connection .* cannot be checkpointed"):
        Checkpoints(tmp_path).save(extended, [])
