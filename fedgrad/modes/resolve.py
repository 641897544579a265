"""A privacy mode from its name (``fedgrad.modes.registry``), on either side: the coordinator's mode for a
scenario, and the client's encoder for a task's announcement."""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from fedgrad.errors import ConfigError
from fedgrad.modes.base import ClientPrivacy, PrivacyMode
from fedgrad.modes.plain import encode_plain
from fedgrad.modes.registry import MODE_NAMES, MODES
from fedgrad.protocol import EncodedUpdate, TrainTask
from fedgrad.scenario import Scenario


def mode_class(name: str) -> type[PrivacyMode[Any]]:
    """The class of privacy mode ``name``; :class:`ConfigError` for a name no mode has."""
    try:
        module, _, attribute = MODES[name].partition(":")
    except KeyError:
        raise ConfigError(f"unknown privacy mode {name!r} (one of {', '.join(MODE_NAMES)})") from None
    cls: type[PrivacyMode[Any]] = getattr(importlib.import_module(module), attribute)
    return cls


def privacy_mode(scenario: Scenario, decryptors: object = None) -> PrivacyMode[Any]:
    """The privacy mode ``scenario.privacy.mode`` names, set up for ``scenario`` (with ``decryptors``, the
    coordinator's handle on them, for modes that need them); :class:`ConfigError` when the mode cannot run with
    the scenario's settings."""
    return mode_class(scenario.privacy.mode)(scenario, decryptors=decryptors)


def encode_update(task: TrainTask, client_id: str, delta: Mapping[str, np.ndarray],
                  privacy: ClientPrivacy) -> EncodedUpdate:
    """The client's side of the round's mode: ``delta`` encoded as ``task.announcement`` asks (plain without one)."""
    if task.announcement is None:
        return encode_plain(delta)
    return mode_class(task.announcement.mode).encode(task, client_id, delta, privacy)


def sends_ciphertexts(task: TrainTask) -> bool:
    """Whether the client's update for ``task`` travels encrypted, as the announced mode says (a client then
    withholds its local metrics, which describe its data)."""
    return task.announcement is not None and mode_class(task.announcement.mode).encrypts(task.announcement)
