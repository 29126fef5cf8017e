"""Executes the notebooks and renders them to docs/notebooks/<name>.html (`make notebooks`).

Each notebook runs top to bottom with nbclient in a fresh temporary working directory (so a
path relative to the repository would fail here), the quickstart first: it trains the
pipeline the inspection notebook then reads (TWOTOWER_ROOT). Each HTML page carries the
SHA-256 of its notebook's cell sources (:func:`source_hash`); tests/test_notebooks.py checks
that the pages are current. The notebooks themselves stay committed without outputs.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = ("quickstart.ipynb", "inspect_trainer.ipynb")  # in this order: see above
HASH_META = "twotower-notebook-source"


def source_hash(path: str) -> str:
    """SHA-256 of a notebook's cells (type and source), outputs and metadata left out."""
    with open(path, encoding="utf-8") as handle:
        cells = json.load(handle)["cells"]
    text = json.dumps([[c["cell_type"], "".join(c["source"]) if isinstance(c["source"], list)
                        else c["source"]] for c in cells], ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def render(name: str, workdir: str, env: dict, out_dir: str) -> str:
    import nbclient
    import nbformat
    from nbconvert import HTMLExporter

    path = os.path.join(ROOT, "notebooks", name)
    notebook = nbformat.read(path, as_version=4)
    os.environ.update(env)
    nbclient.NotebookClient(notebook, timeout=1800, kernel_name="python3",
                            resources={"metadata": {"path": workdir}}).execute()
    for cell in notebook.cells:  # Beam's interactive display: scripts fetched from a CDN
        if cell.cell_type == "code":
            kept = [o for o in cell.outputs if "interactive_beam" not in json.dumps(
                o.get("data", {}))]
            cell.outputs = []
            for output in kept:  # a stream cut in two by what was left out: one again
                last = cell.outputs[-1] if cell.outputs else None
                if (last is not None and output.get("output_type") == "stream"
                        and last.get("output_type") == "stream"
                        and last.get("name") == output.get("name")):
                    last["text"] += output["text"]
                else:
                    cell.outputs.append(output)
    body, _ = HTMLExporter().from_notebook_node(notebook)
    body = body.replace(workdir, "&lt;working directory&gt;")  # no machine's temporary path
    tag = f'<meta name="{HASH_META}" content="sha256:{source_hash(path)}">'
    body = body.replace("<head>", "<head>\n" + tag, 1)
    target = os.path.join(out_dir, name.replace(".ipynb", ".html"))
    with open(target + ".partial", "w", encoding="utf-8") as handle:
        handle.write(body)
    os.replace(target + ".partial", target)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "notebooks"),
                        help="folder for the HTML pages (default: docs/notebooks)")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory(prefix="twotower-notebooks-") as workdir:
        runs = os.path.join(workdir, "runs")
        env = {"TWOTOWER_QUICKSTART_ROOT": runs, "TWOTOWER_QUICKSTART_EPOCHS": "4",
               "TWOTOWER_ROOT": os.path.join(runs, "quickstart")}
        for name in NOTEBOOKS:
            print("rendered", render(name, workdir, env, args.out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
