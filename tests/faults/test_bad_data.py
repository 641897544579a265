"""Bad scenarios, hostile corpora and damaged or mismatched shards: clear one-line errors, or a run that
goes on with what can be used."""
import asyncio
import base64
import json

import numpy as np
import pytest

from client.pool import run_clients
from client.session import ClientError, ClientOptions
from fedgrad.cli.main import main
from fedgrad.data import load_shard, load_vocab
from fedgrad.data.federated import shard_file_name
from fedgrad.security.tokens import read_token_file

pytestmark = pytest.mark.faults

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8).decode()


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fedgrad: error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("what, scenario_text, message", [
    ("unknown key", "[federation]\nclients = 3\nrounds_per_epoch = 2\n", "federation.rounds_per_epoch: unknown key"),
    ("unknown section", "[federatoin]\nclients = 3\n", "federatoin: unknown key"),
    ("wrong type", "[federation]\nclients = \"three\"\n", "federation.clients: expected an integer"),
    ("out of range", "[train]\nlr = -1.0\n", "train.lr: must be > 0"),
    ("contradiction", "[federation]\nclients = 3\nclients_per_round = 5\n", "federation.clients_per_round"),
    ("missing corpus", "[data]\ncorpus = \"/nonexistent/corpus\"\n", "/nonexistent/corpus"),
    ("not TOML", "[federation\nclients = 3\n", "invalid TOML"),
])
def test_bad_scenarios_are_one_line_errors_and_leave_no_run_behind(lab, tally, capsys, what, scenario_text, message):
    path = lab.tmp / "bad.toml"
    path.write_text(f'name = "bad"\n[output]\ndir = "{lab.runs}"\n' + scenario_text, encoding="utf-8")
    with tally.bad_input(f"scenario: {what}") as bad:
        code = main(["simulate", str(path)])
        error = one_line_error(capsys)
        left_behind = lab.runs.exists() and any(lab.runs.iterdir())
        if code == 2 and message in error and not left_behind:
            bad.refused(f"exit {code}: {error}")
        assert code == 2
        assert message in error
        assert not left_behind


def write_hostile_corpus(root, clean_corpus) -> None:
    """The clean corpus plus emails in broken encodings, empty ones and binary attachments."""
    for label in ("ham", "spam"):
        (root / label).mkdir(parents=True)
        for path in sorted((clean_corpus / label).iterdir()):
            (root / label / path.name).write_bytes(path.read_bytes())
    (root / "spam" / "9001.latin1.txt").write_bytes("Subject: prix réduit\ncrédit gratuit offre\n".encode("latin-1"))
    (root / "spam" / "9002.broken.txt").write_bytes(b"Subject: cash \xff\xfe\xc3\x28 prize\n\x00\x00 winner \x80\x81\n")
    (root / "ham" / "9003.empty.txt").write_bytes(b"")
    (root / "ham" / "9004.headers-only.txt").write_bytes(b"Subject:\n\n")
    (root / "ham" / "9005.attachment.txt").write_text(
        "Subject: agenda attached\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n"
        "--XX\nContent-Type: text/plain\n\nthe meeting agenda is attached\n"
        f"--XX\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\n{PNG}\n--XX--\n", encoding="ascii")
    (root / "spam" / "9006.binary.txt").write_bytes(bytes(range(256)) * 16)


def test_corpus_with_broken_encodings_empty_emails_and_attachments_trains(lab, tally, capsys):
    corpus = lab.tmp / "hostile-corpus"
    write_hostile_corpus(corpus, lab.corpus)
    scenario = lab.scenario(rounds=2)
    scenario.write_text(scenario.read_text().replace(str(lab.corpus), str(corpus)))
    # Not refused but absorbed: it counts as handled when the run finished and the binary bytes stayed out.
    with tally.bad_input("corpus: broken encodings, empty emails, binary attachments") as bad:
        assert main(["data", "info", str(corpus), "--json"]) == 0
        counts = json.loads(capsys.readouterr().out)
        assert counts["emails"] == 126 and counts["empty"] >= 1
        assert main(["simulate", str(scenario), "--insecure"]) == 0
        run_dir = lab.traces.only_run_dir(lab.runs)
        words = set(load_vocab(run_dir / "data").to_dict()["words"])
        outcome = lab.measure_run(run_dir, 2)
        if outcome.survived and "agenda" in words and not any(PNG[:12].lower() in word for word in words):
            bad.refused("parsed: run finished, attachment bytes not in the vocabulary")
        assert "agenda" in words and not any(PNG[:12].lower() in word for word in words)
        assert outcome.survived, outcome.detail


def test_data_split_rebuilds_the_servers_shards_and_a_stale_split_is_refused(lab, tally, capsys):
    scenario = lab.scenario(rounds=3, timeout_s=5.0)
    split = lab.tmp / "split"
    assert main(["data", "split", str(scenario), "--out", str(split)]) == 0
    assert "3 client shards" in capsys.readouterr().out
    stale = lab.tmp / "stale"
    # A split made from another corpus: a larger vocabulary, so ids beyond the coordinator's model.
    other_corpus = lab.tmp / "other-corpus"
    write_hostile_corpus(other_corpus, lab.corpus)
    for i in range(10):
        (other_corpus / "spam" / f"99{i:02d}.new-words.txt").write_text(
            "Subject: " + " ".join(f"novel{i}word{j}" for j in range(20)) + "\n", encoding="utf-8")
    assert main(["data", "split", str(scenario), "--out", str(stale), "--set", f"data.corpus={other_corpus}"]) == 0
    capsys.readouterr()

    async def run():
        async with lab.federation(scenario) as fed:
            for k in range(3):  # the same recipe gives the same shards as the coordinator's
                ours, theirs = load_shard(split, k), load_shard(fed.run_dir / "data", k)
                np.testing.assert_array_equal(ours.ids, theirs.ids)
                np.testing.assert_array_equal(ours.labels, theirs.labels)
            tokens = read_token_file(fed.token_file, ["0", "1", "2"])
            options = ClientOptions(wait_s=1.0, connect_timeout_s=10.0, backoff_max_s=0.2)
            with tally.bad_input("shard from a stale split") as bad:
                stale_shards = {cid: load_shard(stale, int(cid)) for cid in tokens}
                assert max(int(s.ids.max()) for s in stale_shards.values()) >= len(load_vocab(fed.run_dir / "data"))
                with pytest.raises(ClientError, match="was it split from the same scenario") as caught:
                    await asyncio.wait_for(run_clients(fed.address, stale_shards, options=options, tokens=tokens,
                                                       security=lab.client_security()), 30)
                bad.refused(caught.value)
            good = {cid: load_shard(split, int(cid)) for cid in tokens}
            await asyncio.wait_for(run_clients(fed.address, good, options=options, tokens=tokens,
                                               security=lab.client_security()), 60)
            await asyncio.wait_for(fed.run, 30)
            return fed.records()

    assert len(asyncio.run(run())) == 3
    capsys.readouterr()
    with tally.bad_input("corrupt shard file") as bad:
        (split / shard_file_name(1)).write_bytes(b"PK\x03\x04 this is not a shard")
        code = main(["client", "--server", "127.0.0.1:1", "--shard-dir", str(split), "--client-id", "1"])
        error = one_line_error(capsys)
        if code == 2 and "corrupt shard file" in error:
            bad.refused(f"exit {code}: {error}")
        assert code == 2
        assert "corrupt shard file" in error
