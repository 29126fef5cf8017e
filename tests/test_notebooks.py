"""The rendered notebooks (docs/notebooks/*.html, `make notebooks`) are current: each page
carries the hash of the cells it was executed from, and has their outputs."""
import os
import re
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "scripts"))
from render_notebooks import HASH_META, NOTEBOOKS, source_hash  # noqa: E402


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_rendered_copy_is_current_with_the_notebook(name):
    page = os.path.join(ROOT, "docs", "notebooks", name.replace(".ipynb", ".html"))
    assert os.path.exists(page), f"{page} missing: run `make notebooks`"
    with open(page, encoding="utf-8") as handle:
        text = handle.read()
    stored = re.search(rf'<meta name="{HASH_META}" content="sha256:([0-9a-f]{{64}})">', text)
    assert stored, f"{page}: no source hash; re-render with `make notebooks`"
    assert stored.group(1) == source_hash(os.path.join(ROOT, "notebooks", name)), \
        f"{page} is older than notebooks/{name}: run `make notebooks` and commit docs/notebooks"


def test_the_hash_sees_a_changed_cell(tmp_path):
    import json

    source = os.path.join(ROOT, "notebooks", "quickstart.ipynb")
    with open(source, encoding="utf-8") as handle:
        notebook = json.load(handle)
    notebook["cells"][0]["source"] = "# changed\n"
    changed = tmp_path / "changed.ipynb"
    changed.write_text(json.dumps(notebook), encoding="utf-8")
    assert source_hash(str(changed)) != source_hash(source)


def test_the_rendered_quickstart_shows_a_run_and_the_inspection_its_figures():
    folder = os.path.join(ROOT, "docs", "notebooks")
    with open(os.path.join(folder, "quickstart.html"), encoding="utf-8") as handle:
        quick = handle.read()
    assert "== result: training completed" in quick and "Building wheel" not in quick
    with open(os.path.join(folder, "inspect_trainer.html"), encoding="utf-8") as handle:
        inspect = handle.read()
    assert inspect.count("data:image/png;base64,") >= 6 and "learned: recall_at_10" in inspect
    assert "cuFFT" not in inspect and "cuDNN" not in inspect
