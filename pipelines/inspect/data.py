"""What the Transform made: vocabularies, and transformed examples decoded back to raw values."""
from __future__ import annotations

import csv
import os
from typing import Dict, List

from transform.naming import CANDIDATE_ID, QUERY_ID


def vocabularies(run: dict, top: int = 10) -> Dict[str, Dict[str, object]]:
    """``{file: {'size', 'top'}}``: each vocabulary's size and most frequent entries.

    TFT writes vocabularies most frequent first, one entry per line.
    """
    assets = os.path.join(run["transform_graph"] or "", "transform_fn", "assets")
    if not run["transform_graph"] or not os.path.isdir(assets):
        return {}
    out = {}
    for name in sorted(os.listdir(assets)):
        with open(os.path.join(assets, name), "rb") as handle:
            entries = handle.read().decode("utf-8", errors="replace").splitlines()
        out[name] = {"size": len(entries), "top": entries[:top]}
    return out


def _vocab_entries(run: dict) -> Dict[str, List[str]]:
    assets = os.path.join(run["transform_graph"], "transform_fn", "assets")
    out = {}
    for name in os.listdir(assets):
        with open(os.path.join(assets, name), "rb") as handle:
            out[name] = handle.read().decode("utf-8", errors="replace").splitlines()
    return out


def decode(value, vocabulary: List[str]):
    """A transformed index (or padded list of them) as the raw value(s) it stands for."""
    def one(i):
        i = int(i)
        if i < 0:
            return None  # padding
        return vocabulary[i] if i < len(vocabulary) else f"<oov {i - len(vocabulary)}>"

    if hasattr(value, "__len__") and not isinstance(value, (bytes, str)):
        return [v for v in (one(i) for i in value) if v is not None]
    return one(value)


def sample(run: dict, split: str = "train", rows: int = 5) -> List[Dict[str, object]]:
    """The first ``rows`` transformed examples of ``split``, each feature decoded to what
    it stands for: vocabulary indices back to ids and tokens, numbers as they are."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tensorflow_transform as tft  # TF Transform: off the CLI's fast path

    from trainer.data import load_arrays  # TensorFlow: off the CLI's fast path
    from trainer.towers import tower_inputs  # TensorFlow: off the CLI's fast path

    if split not in run["examples"]:
        raise ValueError(f"no transformed {split!r} split in {run['root']} "
                         f"(splits: {sorted(run['examples'])})")
    output = tft.TFTransformOutput(run["transform_graph"])
    arrays = load_arrays([os.path.join(run["examples"][split], "*")],
                         output.transformed_feature_spec())
    vocabs = _vocab_entries(run)
    described = {i["key"]: i for t in ("query_tower", "candidate_tower")
                 for i in tower_inputs(run["spec"], t)}
    out = []
    for r in range(min(rows, len(arrays[QUERY_ID]))):
        row = {"query_id": arrays[QUERY_ID][r].decode("utf-8", errors="replace"),
               "candidate_id": arrays[CANDIDATE_ID][r].decode("utf-8", errors="replace")}
        for key, info in described.items():
            value = arrays[key][r]
            if info["vocabulary"] in vocabs:
                row[info["name"]] = decode(value, vocabs[info["vocabulary"]])
            else:
                row[info["name"]] = value.tolist() if hasattr(value, "tolist") else value
        out.append(row)
    return out


def candidate_table(run: dict, limit: int = 200_000) -> Dict[str, Dict[str, str]]:
    """``{candidate id: {column: raw value}}`` from the config's candidate table
    (``data.candidates.path``, a CSV), else from the prepared catalog split; {} if neither
    is there. Values are the raw text as the file has it (names, categories, prices)."""
    d = run["spec"]["data"]
    table = d.get("candidates") or {}
    path, key = table.get("path"), table.get("id") or d["candidate_id"]
    if path and os.path.isfile(path) and path.endswith(".csv"):
        out = {}
        with open(path, newline="", encoding="utf-8") as handle:
            for n, row in enumerate(csv.DictReader(handle)):
                if n >= limit:
                    break
                out[str(row.get(key, ""))] = {c: v for c, v in row.items() if c != key}
        return out
    catalog = os.path.join(run["root"], "input", "catalog")
    if not os.path.isdir(catalog):
        return {}
    import pyarrow.parquet as pq  # pyarrow: off the CLI's fast path

    rows = pq.read_table(catalog).to_pylist()[:limit]
    key = key if rows and key in rows[0] else d["candidate_id"]
    return {str(r.get(key)): {c: "" if v is None else str(v) for c, v in r.items() if c != key}
            for r in rows}


def describe(candidate: str, table: Dict[str, Dict[str, str]], width: int = 80) -> str:
    """A candidate's name and attributes in one short line: ``name · category · price``."""
    row = table.get(candidate)
    if not row:
        return ""
    first = [row[c] for c in ("name", "title") if row.get(c)]
    rest = [f"{c} {v}" for c, v in row.items() if c not in ("name", "title") and v != ""]
    text = " · ".join(first + rest)
    return text if len(text) <= width else text[:width - 1] + "…"
