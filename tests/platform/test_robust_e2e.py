"""End to end: rules over individual updates run in `fedgrad simulate` (client processes over gRPC), and a secure
mode refuses them before any work, in one line."""
import json

from fedgrad.cli.main import main


def write(tmp_path, enron_corpus, write_scenario, strategy, **sections):
    federation = {"clients": 5, "clients_per_round": 5, "min_clients": 5, "rounds": 2, "round_timeout_s": 30,
                  "strategy": strategy, **sections.pop("federation", {})}
    return write_scenario(tmp_path / "robust.toml", enron_corpus, tmp_path / "runs", name="robust", seed=2,
                          train={"batch_size": 8, "lr": 0.05}, federation=federation, **sections)


def test_krum_and_qfedavg_train_from_individual_updates(tmp_path, enron_corpus, write_scenario, run_traces):
    for strategy, options in (("krum", {"f": 1}), ("qfedavg", {"q": 1.0})):
        scenario = write(tmp_path, enron_corpus, write_scenario, strategy, federation={"options": options})
        assert main(["simulate", str(scenario), "--insecure", "--set", "federation.processes=2"]) == 0
        run_dir = max((tmp_path / "runs").iterdir(), key=lambda path: path.stat().st_mtime_ns)
        records = run_traces.metrics(run_dir)
        summary = json.loads((run_dir / "summary.json").read_text())
        assert [r.clients_used for r in records] == [5, 5]
        assert records[-1].loss < summary["initial"]["loss"], strategy
        # QFedAvg's clients report their loss on the model they received, before training
        assert ("start_loss" in (records[0].local or {})) == (strategy == "qfedavg")


def test_a_secure_mode_refuses_a_robust_rule_in_one_line(tmp_path, enron_corpus, write_scenario, capsys):
    scenario = write(tmp_path, enron_corpus, write_scenario, "fedmedian",
                     privacy={"mode": "paillier-trusted", "key_bits": 256, "insecure_key_bits": True})
    assert main(["simulate", str(scenario), "--insecure"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(
        "fedgrad: error: federation.strategy: 'fedmedian' needs each client's update, which privacy.mode = "
        "'paillier-trusted' does not give: secure aggregation exists to hide each client's update")
    assert "Traceback" not in err and not (tmp_path / "runs").exists()
