"""Each privacy mode reads its own typed settings from the scenario and answers for itself: whether updates travel
encrypted (on the coordinator, and on a client reading the announcement), whether it needs decryptors, what it
announces and which settings it refuses."""
import dataclasses
import warnings

import numpy as np
import pytest

from fedgrad.crypto import InsecureKeyWarning
from fedgrad.errors import ConfigError
from fedgrad.modes.base import NoSettings
from fedgrad.modes.dp import DPMode, DPSettings
from fedgrad.modes.paillier import PaillierMode, ThresholdSettings
from fedgrad.modes.paillier_trusted import TrustedSettings
from fedgrad.modes.registry import MODE_NAMES
from fedgrad.modes.resolve import mode_class, privacy_mode, sends_ciphertexts
from fedgrad.protocol import Announcement, RoundCohort, TaskConfig, TrainTask
from fedgrad.scenario import Scenario
from fedgrad.transport.codec import encode_tensors

N_PARAMS = 1000


def _scenario(**privacy: object) -> Scenario:
    return Scenario.from_dict({"name": "s", "federation": {"clients": 10, "clients_per_round": 10, "rounds": 5},
                               "privacy": {"key_bits": 512, "insecure_key_bits": True, **privacy}})


EXPECTED = {  # mode (and placement) -> settings type, encrypted, needs decryptors
    ("none", "central"): (NoSettings, False, False),
    ("paillier-trusted", "central"): (TrustedSettings, True, False),
    ("paillier-naive", "central"): (TrustedSettings, True, False),
    ("paillier", "central"): (ThresholdSettings, True, True),
    ("paillier-masked", "central"): (ThresholdSettings, True, True),
    ("dp", "central"): (DPSettings, False, False),
    ("dp", "distributed"): (DPSettings, True, True),
}


@pytest.mark.parametrize(("name", "placement"), list(EXPECTED))
def test_each_mode_reads_its_own_settings_and_says_what_it_is(name, placement):
    mode = privacy_mode(_scenario(mode=name, dp_placement=placement))
    settings_type, encrypted, needs_decryptors = EXPECTED[name, placement]
    assert type(mode.settings) is settings_type
    assert (mode.encrypted, mode.needs_decryptors) == (encrypted, needs_decryptors)
    assert mode.profile().epsilon == mode.takes_epsilon == (name == "dp")


@pytest.mark.parametrize("name", MODE_NAMES)
def test_every_registered_mode_owns_frozen_settings_and_a_consistent_profile(name):
    mode = privacy_mode(_scenario(mode=name))
    assert dataclasses.is_dataclass(mode.settings)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mode.settings.extra = 1
    profile = mode.profile()
    assert (profile.key_holder != "") == mode.encrypted
    assert profile.key_holder == "decryptors" or not mode.needs_decryptors
    assert mode.settings_line().startswith(name) and mode.guarantee().full


def test_a_client_reads_encryption_off_the_announcement_as_the_coordinator_sets_it():
    distributed = DPMode(_scenario(mode="dp", dp_placement="distributed"))
    announced = Announcement("dp", distributed.pinned_params(N_PARAMS), b"key")
    assert DPMode.encrypts(announced) and distributed.encrypted
    central = DPMode(_scenario(mode="dp"))
    assert not DPMode.encrypts(Announcement("dp", {"l2_clip": 1.0, "noise_std": 0.0}, b"key")) and not central.encrypted
    assert PaillierMode.encrypts(Announcement("paillier")) and not mode_class("none").encrypts(Announcement("none"))


def test_distributed_dp_composes_the_threshold_settings_without_touching_the_scenario():
    scenario = _scenario(mode="dp", dp_placement="distributed", dp_clip=0.5, clip=3.0, max_weight=64)
    mode = DPMode(scenario)
    params = mode.pinned_params(N_PARAMS)
    # one L2 clip (DP's), next to the packing's per-coordinate range R derived from the noise (not privacy.clip)
    assert sorted(params) == ["l2_clip", "noise_std", "secure", "secure_mode"] and params["l2_clip"] == 0.5
    secure, share_std, sigmas = mode.secure_settings(N_PARAMS)
    assert params["secure"]["clip"] == secure.clip == pytest.approx(0.5 + sigmas * share_std)
    assert params["secure"]["max_weight"] == secure.max_weight == 1  # every update counts once
    assert (scenario.privacy.clip, scenario.privacy.max_weight) == (3.0, 64)  # the scenario is as written
    assert (secure.threshold, secure.decryptors) == (2, 3) and params["secure_mode"] == "paillier"
    masked = DPMode(_scenario(mode="dp", dp_placement="distributed", dp_secure="paillier-masked"))
    assert masked.secure_mode.name == "paillier-masked" and masked.pinned_params(N_PARAMS)["secure_mode"] == \
        "paillier-masked"
    with pytest.raises(ConfigError, match=r"privacy\.dp_secure: must be a threshold"):
        DPMode(_scenario(mode="dp", dp_placement="distributed", dp_secure="paillier-trusted"))


@pytest.mark.parametrize("privacy", [{"mode": "paillier"}, {"mode": "dp", "dp_placement": "distributed"}])
def test_the_threshold_settings_refuse_a_minority_threshold_where_they_apply(privacy):
    with pytest.raises(ConfigError, match=r"privacy\.threshold: more than half"):
        privacy_mode(_scenario(**privacy, decryptors=4, threshold=2))
    privacy_mode(_scenario(mode="dp", decryptors=4, threshold=2))  # central DP has no decryptors


def test_secure_modes_need_two_contributors_and_the_mode_says_so():
    scenario = Scenario.from_dict({"name": "s", "federation": {"min_clients": 1},
                                   "privacy": {"mode": "paillier", "key_bits": 512, "insecure_key_bits": True}})
    with pytest.raises(ConfigError, match=r"federation\.min_clients: secure aggregation"):
        privacy_mode(scenario)


@pytest.mark.parametrize(("name", "placement"), list(EXPECTED))
def test_the_coordinator_and_the_client_give_one_answer_to_is_it_encrypted(name, placement):
    """What a client reads off the announcement the coordinator's mode sends is what the coordinator's mode says."""
    mode = privacy_mode(_scenario(mode=name, dp_placement=placement))
    if mode.needs_decryptors:  # what the coordinator announces is what the run policy pins
        announcement: Announcement | None = Announcement(name, mode.pinned_params(N_PARAMS), b"key")
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureKeyWarning)
            model = {"w": np.zeros((N_PARAMS,), dtype=np.float32)}
            aggregation = mode.aggregation(model)
        specs = encode_tensors(model)[0]
        announcement = aggregation.new_accumulator(specs, RoundCohort(1, {"0": 1.0, "1": 1.0})).announcement
        aggregation.close()
    manifest = tuple(encode_tensors({"w": np.zeros((N_PARAMS,), dtype=np.float32)})[0])
    task = TrainTask(1, 1, 0, 1.0, TaskConfig.from_scenario(mode.scenario, 10), manifest, announcement)
    assert sends_ciphertexts(task) == mode.encrypted
