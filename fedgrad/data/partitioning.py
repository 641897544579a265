"""Split training examples among simulated clients.

Schemes (every client always gets at least one example):

* ``iid``: a seeded shuffle cut into near-equal parts.
* ``quantity``: quantity skew; client sizes follow proportions drawn from Dirichlet(`alpha`), labels
  stay IID. Small `alpha` gives a few large clients and many tiny ones.
* ``dirichlet``: label skew (Hsu et al., 2019); each class is divided among clients by its own
  Dirichlet(`alpha`) proportions. Small `alpha` gives clients dominated by one class;
  large `alpha` approaches IID.
* ``book``: the book's contiguous split (Bob, Alice, Sue): examples alternate spam, ham, spam, ...
  as the book's training list does, leftovers of the larger class at the end, and the list is cut
  into `n_clients` contiguous near-equal blocks. It ignores `seed` and `alpha`, like the book.

Each client's indices come in a seeded random order (``book``: its alternating order), so a trainer
walking a shard front to back never sees one class first.
"""
from __future__ import annotations

import numpy as np

from fedgrad.errors import ConfigError

SCHEMES = ("iid", "quantity", "dirichlet", "book")


def partition(labels: np.ndarray | list[int], n_clients: int, scheme: str = "iid", seed: int = 0,
              alpha: float = 0.5) -> list[np.ndarray]:
    """Disjoint int64 index arrays into `labels`, one per client, that together cover every index."""
    labels = np.asarray(labels)
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown partition {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if n_clients < 1:
        raise ConfigError(f"the number of clients must be >= 1, got {n_clients}")
    if n_clients > len(labels):
        raise ConfigError(f"cannot give each of {n_clients} clients an example: only {len(labels)} training examples")
    if scheme in ("quantity", "dirichlet") and not alpha > 0:
        raise ConfigError(f"alpha must be > 0 for the {scheme} partition, got {alpha}")
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        return np.array_split(rng.permutation(len(labels)), n_clients)
    if scheme == "quantity":
        return _quantity_skew(len(labels), n_clients, alpha, rng)
    if scheme == "dirichlet":
        return _label_skew(labels, n_clients, alpha, rng)
    return _book(labels, n_clients)


def _quantity_skew(n: int, n_clients: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    sizes = 1 + rng.multinomial(n - n_clients, rng.dirichlet(np.full(n_clients, alpha)))
    return np.split(rng.permutation(n), np.cumsum(sizes)[:-1])


def _label_skew(labels: np.ndarray, n_clients: int, alpha: float, rng: np.random.Generator) -> list[np.ndarray]:
    owner = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        shares = rng.dirichlet(np.full(n_clients, alpha))
        cuts = np.floor(np.cumsum(shares)[:-1] * len(members)).astype(np.int64)
        for client, part in enumerate(np.split(members, cuts)):
            owner[part] = client
    _give_empty_clients_one_example(owner, n_clients)
    return [rng.permutation(np.flatnonzero(owner == client)) for client in range(n_clients)]


def _give_empty_clients_one_example(owner: np.ndarray, n_clients: int) -> None:
    """Small alpha can leave clients with nothing; move one example to each of them from the then-largest
    client (lowest id on ties): the smallest change that keeps the drawn skew."""
    sizes = np.bincount(owner, minlength=n_clients)
    for client in np.flatnonzero(sizes == 0):
        donor = int(np.argmax(sizes))
        owner[np.flatnonzero(owner == donor)[-1]] = client
        sizes[donor] -= 1
        sizes[client] += 1


def _book(labels: np.ndarray, n_clients: int) -> list[np.ndarray]:
    spam, ham = np.flatnonzero(labels == 1), np.flatnonzero(labels != 1)
    paired = min(len(spam), len(ham))
    alternating = np.empty(2 * paired, dtype=np.int64)
    alternating[0::2], alternating[1::2] = spam[:paired], ham[:paired]
    return np.array_split(np.concatenate([alternating, spam[paired:], ham[paired:]]), n_clients)
