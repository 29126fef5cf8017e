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
    from pipelines.config import apply_overrides, read_raw

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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Groups for pytest-xdist (`make test` runs ``-n auto --dist loadgroup``): each test file
    runs on one worker, so its module fixtures (a pipeline run, a Transform output) are built
    once, and every test on the shared pipeline run (``e2e_run``) goes with them, wherever
    it is written. Without xdist the marks do nothing."""
    for item in items:
        uses_run = "e2e_run" in getattr(item, "fixturenames", ())
        item.add_marker(pytest.mark.xdist_group("e2e_run" if uses_run else item.nodeid.split("::")[0]))
