"""The key holder's parallel decryption: exact, contained in its own worker processes, and gone when it is."""
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from fedgrad.crypto import Accumulator, KeyHolder, SecureAggConfig, make_encoder
from fedgrad.crypto.decryption import MIN_CHUNK, ParallelDecryptor, plan_parts, split

BATCH = 2 * MIN_CHUNK  # the smallest batch that gets two worker processes


@given(st.lists(st.integers(), max_size=200), st.integers(1, 16))
def test_split_is_contiguous_and_balanced(items, parts):
    chunks = split(items, parts)
    assert len(chunks) == parts
    assert [x for chunk in chunks for x in chunk] == items
    assert max(map(len, chunks)) - min(map(len, chunks)) <= 1


def test_parts_are_one_per_core_and_never_smaller_than_min_chunk():
    assert plan_parts(BATCH, cores=8) == 2
    assert plan_parts(BATCH - 1, cores=8) == 1
    assert plan_parts(100 * MIN_CHUNK, cores=4) == 4
    assert plan_parts(100 * MIN_CHUNK, cores=1) == 1
    assert plan_parts(0, cores=4) == 1


def ciphertexts(pub, count, seed=0):
    rng = np.random.default_rng(seed)
    plaintexts = [int(x) for x in rng.integers(0, 2**62, count)]
    return plaintexts, [pub.raw_encrypt(m) for m in plaintexts]


def live(pid: int) -> bool:
    """Whether `pid` runs (an exited child not yet reaped by its new parent counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until_gone(pids, timeout_s=10.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while any(map(live, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [pid for pid in pids if live(pid)]


def test_workers_decrypt_exactly_and_stop_on_close(small_key):
    pub, priv = small_key
    plaintexts, cts = ciphertexts(pub, BATCH)
    before = set(multiprocessing.active_children())
    decryptor = ParallelDecryptor(priv, BATCH, cores=2)
    assert decryptor.parts == 2
    assert decryptor.decrypt(cts) == plaintexts
    workers = [pid for p in set(multiprocessing.active_children()) - before if (pid := p.pid) is not None]
    assert len(workers) == 2
    assert decryptor.decrypt(cts[:3]) == plaintexts[:3]  # a short batch still splits and stays in order
    decryptor.close()
    decryptor.close()
    assert wait_until_gone(workers) == []


def test_small_batches_never_start_a_worker(small_key):
    pub, priv = small_key
    plaintexts, cts = ciphertexts(pub, BATCH - 1)
    before = set(multiprocessing.active_children())
    decryptor = ParallelDecryptor(priv, BATCH - 1, cores=8)
    assert decryptor.decrypt(cts) == plaintexts
    assert set(multiprocessing.active_children()) == before


def test_killed_workers_fall_back_to_the_key_holders_process(small_key):
    pub, priv = small_key
    plaintexts, cts = ciphertexts(pub, BATCH)
    before = set(multiprocessing.active_children())
    decryptor = ParallelDecryptor(priv, BATCH, cores=2)
    decryptor.decrypt(cts)
    workers = [pid for p in set(multiprocessing.active_children()) - before if (pid := p.pid) is not None]
    for pid in workers:  # e.g. the out-of-memory killer
        os.kill(pid, signal.SIGKILL)
    assert wait_until_gone(workers) == []
    assert decryptor.decrypt(cts) == plaintexts
    assert decryptor.parts == 1
    assert set(multiprocessing.active_children()) <= before


def test_key_holder_decrypts_the_same_aggregate_on_all_cores(small_key):
    pub, priv = small_key
    cfg = SecureAggConfig(mode="paillier", n_params=1, clip=1.0, max_clients=4)
    slots = make_encoder(cfg, pub).scheme.layout.slots
    cfg = SecureAggConfig(mode="paillier", n_params=BATCH * slots, clip=1.0, max_clients=4)
    rng = np.random.default_rng(1)
    encoder, accumulator = make_encoder(cfg, pub), Accumulator(cfg, pub)
    for client_id in "abc":
        accumulator.add(client_id, encoder.encrypt(rng.uniform(-1, 1, cfg.n_params), 0.25))
    args = (accumulator.contributors, accumulator.payload())
    before = set(multiprocessing.active_children())
    with KeyHolder(priv, cfg, min_clients=2, cores=2) as all_cores:
        summed = all_cores.decrypt_aggregate(1, *args)
        workers = [pid for p in set(multiprocessing.active_children()) - before if (pid := p.pid) is not None]
        assert len(workers) == 2
    assert wait_until_gone(workers) == []
    np.testing.assert_array_equal(summed, KeyHolder(priv, cfg, min_clients=2, cores=1).decrypt_aggregate(1, *args))

def test_workers_exit_when_the_key_holders_process_is_killed(small_key, tmp_path):
    """SIGKILL leaves no time to close the pool; the workers must not outlive their parent with the key."""
    script = tmp_path / "holder.py"
    script.write_text(textwrap.dedent(f"""
        import multiprocessing, sys, time
        import phe
        from fedgrad.crypto.decryption import ParallelDecryptor

        if __name__ == "__main__":
            pub = phe.PaillierPublicKey({small_key[0].n})
            priv = phe.PaillierPrivateKey(pub, {small_key[1].p}, {small_key[1].q})
            decryptor = ParallelDecryptor(priv, {BATCH}, cores=2)
            assert decryptor.decrypt([pub.raw_encrypt(7)] * {BATCH}) == [7] * {BATCH}
            print(*[p.pid for p in multiprocessing.active_children()], flush=True)
            time.sleep(60)
    """))
    holder = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in holder.stdout.readline().split()]
        assert len(workers) == 2 and all(map(live, workers))
    finally:
        holder.kill()
        holder.wait()
    assert wait_until_gone(workers) == []
