"""Client-side encoding: what a client refuses to send, and what the coordinator's accumulator accepts."""
import numpy as np
import pytest

from fedgrad.crypto import CryptoError, InsecureKeyWarning
from fedgrad.metrics import PhaseTimer
from fedgrad.modes.base import ClientPrivacy, EncodingRefused
from fedgrad.modes.dp import noise_stream
from fedgrad.modes.resolve import encode_update, privacy_mode
from fedgrad.protocol import Announcement, Encoding, Rejected, RoundCohort, TaskConfig, TrainSettings, TrainTask
from fedgrad.scenario import ModelConfig
from fedgrad.transport.codec import encode_tensors, tensor_specs

DELTA = {"w": np.array([[0.1, -0.2], [0.3, 0.0]], np.float32), "b": np.array([0.05], np.float32)}
SPECS = tensor_specs(DELTA)
CONFIG = TaskConfig(ModelConfig(), 10, TrainSettings(epochs=1, batch_size=8, lr=0.1, optimizer="sgd"))


def task(weight: float, announcement: Announcement | None, round_number: int = 1) -> TrainTask:
    return TrainTask(1, round_number, 0, weight, CONFIG, tuple(SPECS), announcement)


@pytest.fixture
def paillier(scenario):
    with pytest.warns(InsecureKeyWarning):
        return privacy_mode(scenario('privacy.mode="paillier-trusted"')).aggregation(DELTA)


def test_a_noise_share_is_never_sent_in_plain():
    announcement = Announcement("dp", {"l2_clip": 1.0, "noise_std": 0.1})
    with pytest.raises(EncodingRefused, match="without secure aggregation"):
        encode_update(task(1.0, announcement), "0", DELTA, ClientPrivacy(noise_seed=1))


def test_a_short_key_is_refused_unless_the_client_allows_it(paillier):
    accumulator = paillier.new_accumulator(SPECS, RoundCohort(1, {"0": 1.0, "1": 3.0}))
    train = task(1.0, accumulator.announcement)
    with pytest.raises(CryptoError, match="refusing a 512-bit public key"):
        encode_update(train, "0", DELTA, ClientPrivacy())
    encoded = encode_update(train, "0", DELTA, ClientPrivacy(allow_insecure_keys=True))
    assert encoded.encoding == Encoding.PAILLIER and len(encoded.payload) == accumulator.payload_bytes


def test_weighted_encrypted_updates_decrypt_to_their_weighted_mean(paillier):
    """Client i folds in n_i / Σ n (announced as cohort_weight); the coordinator divides by the
    contributors' Σ of those shares: a client that never answers does not skew the mean."""
    cohort = RoundCohort(4, {"0": 1.0, "1": 3.0, "2": 4.0})
    accumulator = paillier.new_accumulator(SPECS, cohort)
    assert accumulator.announcement.params["cohort_weight"] == 8.0
    second = {name: -2 * value for name, value in DELTA.items()}
    for client_id, delta in (("0", DELTA), ("1", second)):
        train = task(cohort.weights[client_id], accumulator.announcement, round_number=4)
        accumulator.add(client_id, cohort.weights[client_id],
                        encode_update(train, client_id, delta, ClientPrivacy(allow_insecure_keys=True)).payload)
    summed = accumulator.finalize(PhaseTimer())
    assert summed.contributors == ("0", "1") and summed.weight == pytest.approx(0.5)
    for name, value in DELTA.items():
        np.testing.assert_allclose(summed.total[name] / summed.weight, (1 * value - 3 * 2 * value) / 4, atol=1e-4)


def test_the_paillier_accumulator_has_no_plain_path(paillier):
    accumulator = paillier.new_accumulator(SPECS, RoundCohort(1, {"0": 1.0, "1": 1.0}))
    plain = (encode_tensors(DELTA)[1] * 100)[:accumulator.payload_bytes]  # float32 bytes, of the expected length
    with pytest.raises(Rejected, match="not a ciphertext payload"):
        accumulator.add("0", 1.0, plain)


def test_clients_sharing_a_seed_draw_independent_noise():
    assert len({noise_stream(str(k)) for k in range(1000)}) == 1000
