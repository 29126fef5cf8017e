"""The notebooks: the quickstart runs top to bottom; both are committed without outputs."""
import os

import nbformat
import pytest

from conftest import ROOT


def test_notebooks_are_committed_without_outputs():
    for name in ("quickstart.ipynb", "inspect_trainer.ipynb"):
        notebook = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, name


@pytest.mark.e2e
def test_quickstart_runs_from_config_to_a_compiled_vertex_pipeline(tmp_path):
    from test_e2e import execute_notebook

    text, _ = execute_notebook("quickstart.ipynb", {
        "TWOTOWER_QUICKSTART_ROOT": str(tmp_path / "runs"),
        "TWOTOWER_QUICKSTART_PURCHASES": "4000", "TWOTOWER_QUICKSTART_EPOCHS": "3"})
    assert "warnings: none" in text
    assert "[9/9] Pusher" in text and "epoch 3/3: loss" in text
    assert "== result: training completed" in text and "push gate:" in text
    assert "item_id" in text  # the recommendations table
    assert "tasks: ['ImportSchemaGen', 'ParquetExampleGen', 'PopularityGate', 'Pusher', " \
           "'RefitTrainer', 'RefitTransform', 'RuntimeParameters', 'StatisticsGen', 'Trainer', " \
           "'Transform']" in text
    assert "Building wheel" not in text and "Successfully built" not in text  # a quiet compile
    folder = tmp_path / "runs" / "quickstart"  # <pipeline.root>/<pipeline.name>
    assert (folder / "recommendations.csv").exists() and (folder / "metadata.sqlite").exists()
    assert (folder / "logs" / "runs.jsonl").exists()  # recorded like `twotower run`
    assert list((folder / "bucket" / "my-bucket" / "quickstart" / "quickstart" / "staged").glob(
        "*/modules/trainer/trainer_module.py"))
