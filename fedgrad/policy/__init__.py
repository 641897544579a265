"""The operator's run policy (``document``) and a client's check of each task against it (``check``)."""
from fedgrad.policy.check import PolicyGuard, PolicyRefused
from fedgrad.policy.document import (
    DEFAULT_MIN_CLIENTS,
    DEFAULT_MIN_FRACTION,
    PolicyError,
    RunPolicy,
    key_set_fingerprint,
    make_policy,
    policy_min_clients,
    task_settings,
)

__all__ = ["DEFAULT_MIN_CLIENTS", "DEFAULT_MIN_FRACTION", "PolicyError", "PolicyGuard", "PolicyRefused", "RunPolicy",
           "key_set_fingerprint", "make_policy", "policy_min_clients", "task_settings"]
