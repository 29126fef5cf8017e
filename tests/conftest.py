"""Shared fixtures. TensorFlow must see TF_USE_LEGACY_KERAS before it is imported."""
import copy
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.abspath(os.path.join(ROOT, "..", "shared"))
MOVIELENS = os.path.join(SHARED, "data", "ml-latest-small")


def demo_raw(data_dir):
    """The demo config as a raw mapping, pointed at ``data_dir``'s CSV files."""
    from pipelines.config.schema import apply_overrides, read_raw

    raw = read_raw(os.path.join(ROOT, "examples", "b2b_demo.yaml"))
    return apply_overrides(copy.deepcopy(raw), [
        f"data.path={os.path.join(data_dir, 'purchases.csv')}",
        f"data.candidates.path={os.path.join(data_dir, 'products.csv')}"])


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """A small synthetic B2B dataset (CSV files), generated once per session."""
    from pipelines.data.synthetic import generate

    out = str(tmp_path_factory.mktemp("synthetic"))
    generate(out, customers=120, products=60, purchases=3000, seed=3)
    return out


@pytest.fixture
def raw_config(small_data):
    return demo_raw(small_data)


@pytest.fixture(scope="session")
def e2e_run(tmp_path_factory):
    """One real pipeline run (odd ids, ~2 minutes), shared by the tests that need a trained,
    pushed model: tests/test_e2e.py, the bad-invocation table, serving under load."""
    from e2e_helpers import run_pipeline

    return run_pipeline(tmp_path_factory.mktemp("e2e"), "e2e-test", ["training.epochs=6"])


def _files_on_the_shared_run():
    """The test files that use ``e2e_run`` (read from their text, so a new one joins)."""
    here = os.path.dirname(os.path.abspath(__file__))
    found = set()
    for name in sorted(os.listdir(here)):
        if name.startswith("test_") and name.endswith(".py"):
            with open(os.path.join(here, name), encoding="utf-8") as handle:
                if "e2e_run" in handle.read():
                    found.add(f"tests/{name}")
    return found


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`make test` runs on pytest-xdist workers (``-n auto``): each test file goes to one
    worker, so its module fixtures (a pipeline run, a Transform output) are built once, and
    the files that use the shared pipeline run (``e2e_run``) go to one worker together, so
    that run is built once too."""
    from xdist.scheduler import LoadScopeScheduling

    shared = _files_on_the_shared_run()

    class ByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::")[0]
            return "e2e_run" if path in shared else path

    return ByFile(config, log)
