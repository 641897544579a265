"""`simulate --launcher ray`: without Ray a one-line error before any work; with a cluster, client workers
run as Ray tasks. The cluster here is a stand-in module that runs each task in a thread, which exercises
everything fedgrad does with Ray (init, remote tasks, their futures, cancellation) without installing it."""
import sys
import threading
import types
from concurrent.futures import Future
from pathlib import Path

import pytest

from fedgrad.cli.main import main


@pytest.fixture
def scenario(tmp_path, enron_corpus, write_scenario) -> Path:
    """4 clients in 2 client processes (Ray workers), 2 rounds; runs go below ``tmp_path / "runs"``."""
    return write_scenario(tmp_path / "ray.toml", enron_corpus, tmp_path / "runs", name="ray",
                          model={"name": "logreg"}, train={"batch_size": 8},
                          federation={"clients": 4, "clients_per_round": 4, "rounds": 2, "processes": 2})


class FakeRay(types.ModuleType):
    """The slice of Ray's API the launcher uses; each remote call runs in its own thread."""

    def __init__(self) -> None:
        super().__init__("ray")
        self.initialised_with = None
        self.tasks: list[Future] = []

    def init(self, address=None, **options) -> None:
        self.initialised_with = address

    def remote(self, **resources):
        assert resources == {"num_cpus": 1, "max_retries": 0}

        def decorate(function):
            def submit(*args):
                future: Future = Future()

                def body():
                    try:
                        future.set_result(function(*args))
                    except BaseException as error:  # noqa: BLE001 - handed to the future, as Ray does
                        future.set_exception(error)

                threading.Thread(target=body, daemon=True).start()
                self.tasks.append(future)
                return types.SimpleNamespace(future=lambda: future)

            return types.SimpleNamespace(remote=submit)

        return decorate

    def cancel(self, ref, force=False) -> None:
        ref.future().cancel()


def test_without_ray_the_launcher_is_a_clear_error_before_any_work(tmp_path, scenario, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["simulate", str(scenario), "--launcher", "ray"]) == 2
    err = capsys.readouterr().err
    assert "--launcher ray needs Ray" in err and "pip install" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_client_workers_run_as_ray_tasks(scenario, monkeypatch, capsys):
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    assert main(["simulate", str(scenario), "--launcher", "ray", "--ray-address", "ray://head:10001"]) == 0
    assert fake.initialised_with == "ray://head:10001"
    assert len(fake.tasks) == 2 and all(task.done() and task.exception() is None for task in fake.tasks)
    assert "ray: final accuracy" in capsys.readouterr().out
