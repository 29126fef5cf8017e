"""``twotower recommend``: top-k candidates for a list of queries, from a trained model.

The model is a pushed serving SavedModel (or a pipeline root: its newest
pushed model). Its ``assets.extra/config.json`` says which columns it reads.
Each query's features come from its rows in a history CSV (by default the
config's ``data.path``, i.e. everything the model was trained on, whatever
the split): the latest row's columns, and for each history feature the
query's newest ``max_length`` candidates, newest first. The query's
candidates in that CSV are excluded from its recommendations unless
``include_seen``. A query with no rows is served cold: its id goes to the
model's trained OOV row and its other inputs take their configured defaults.
Ids are matched exactly as written. A query that gets fewer than ``k``
recommendations (its own items excluded from a small catalog) is reported.

Output: CSV ``user_id,item_id,rank,score,cold`` (rank 1 best; ``score`` the model's;
``cold`` 1 for a query with no rows in the history, whose list is therefore the
cold-start answer the model gives any query it never saw), then the candidate
table's columns (all of them, or ``columns``), queries in input order, with ids
and values escaped for spreadsheets by the reversible rule of
:mod:`pipelines.csvsafe` (unless ``escape_formulas=False``). Before anything is loaded, the outputs are checked
(:mod:`pipelines.data.written`): never one of the inputs (``--users``, ``--history``, the
model's training data, the model's folder), never a file twotower did not write unless
``force``; they are written beside the target and renamed over it when complete.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from typing import Dict, List, Optional

from pipelines.data import written
from pipelines.build.codegen import module_paths
from pipelines.config.schema import Config, ConfigError
from pipelines.csvsafe import Writer
from pipelines.data import textcheck
from pipelines.data.csvfile import DataError, parse_time, read_rows
from pipelines.data.sql.checks import id_line_break
from pipelines.data.sql.serving import states_now
from pipelines.inspect.run import frozen_config
from pipelines.runners.local import pipelines_in, resolve_pipeline_dir, results
from transform.kinds import history_of
from transform.naming import history_column

HEADER = ("user_id", "item_id", "rank", "score", "cold")


def candidate_table(model: str, cfg: Config, columns: Optional[List[str]]):
    """``(names, {raw id: [values]})`` of the candidate table's columns for the output.

    ``columns`` None: every column but the id, if the table can be found (else none);
    a list: those columns, and the table must be found. A column whose name the output
    already uses is written as ``item_<name>``.

    Raises:
      ConfigError: ``--columns`` names a column the table lacks, or no table is found.
    """
    table = cfg.data.candidates
    path = training_files(model, cfg).get("the model's candidate table") if table else None
    if not path or not os.path.isfile(path):
        if columns:
            raise ConfigError([("--columns", "the model's candidate table is not here "
                                f"({(table.path if table else None) or 'no data.candidates'}): "
                                "give the pipeline folder as --model, or leave --columns out")])
        return [], {}
    header = textcheck.header(path) or []
    wanted = [c for c in header if c != table.id] if columns is None else columns
    missing = [c for c in wanted if c not in header]
    if missing:
        raise ConfigError([("--columns", f"{missing[0]!r} is not a column of {path}; its columns "
                            f"are {', '.join(header)}")])
    values = {}
    for _, row in read_rows(path, [table.id] + [c for c in wanted if c != table.id]):
        values.setdefault(row[table.id], [row[c] for c in wanted])
    names = [f"item_{c}" if c in HEADER else c for c in wanted]
    return names, values


def find_model(path: str, log=None) -> str:
    """A serving SavedModel directory, given it or a pipeline root (``log``: where a warning
    about a damaged record of the run goes; the SavedModel does not need it)."""
    if not os.path.exists(path):
        raise ConfigError([("--model", f"{path} does not exist; give a pipeline folder (e.g. "
                            "runs/b2b-demo) or a serving SavedModel")])
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    found = results(os.path.abspath(path)) if os.path.isdir(path) else {}
    pushed = found.get("serving_model") or ""
    if found.get("serving_missing"):  # never an older version in its place, silently
        raise ConfigError([("--model", f"the newest model {path} pushed, "
                            f"{found['serving_missing']}, is gone (moved or deleted): restore "
                            "it, give another serving model's folder as --model, or run the "
                            "pipeline again")])
    for problem in found.get("unreadable", []) if pushed and log else []:
        log(f"warning: {problem}")
    if not pushed and pipelines_in(path):
        resolve_pipeline_dir(path, "--model")  # a root holding pipelines: the error lists them
    if not pushed:
        raise ConfigError([("--model", f"{path!r} is neither a serving SavedModel nor a pipeline "
                            "folder with a pushed model; run `twotower run` first")])
    return pushed


def model_config(model_dir: str) -> Config:
    path = os.path.join(model_dir, "assets.extra", "config.json")
    if not os.path.exists(path):
        raise ConfigError([("--model", f"{model_dir} has no assets.extra/config.json; it was "
                            "exported by an older version: re-run the pipeline")])
    try:
        with open(path, encoding="utf-8") as handle:
            return Config.from_dict(json.load(handle))
    except (OSError, ValueError) as exc:
        raise ConfigError([("--model", f"{path}: cannot read the model's config ({exc}); "
                            "re-run the pipeline")]) from None


def training_files(model: str, cfg: Config) -> Dict[str, str]:
    """``{what: path}`` of the files the model was trained on, where they can be found: the
    run's own config names them in full when ``model`` is a pipeline folder; a bare model's
    config.json names them by file name only (found if here)."""
    found = {}
    module = module_paths(os.path.join(model, "modules"))["trainer"]
    if os.path.exists(module):
        data = frozen_config(module)["data"]
        found["the model's training data (data.path)"] = data.get("path") or ""
        found["the model's candidate table"] = (data.get("candidates") or {}).get("path") or ""
    for what, path in (("data.path", cfg.data.path),
                       ("data.candidates.path", cfg.data.candidates and cfg.data.candidates.path)):
        if path and os.path.exists(path):
            found.setdefault(f"the model's training data ({what})", path)
    return {what: path for what, path in found.items() if path}


def default_history(model: str, cfg: Config) -> str:
    """The interactions the model was trained on: from the run's own config when ``model``
    is a pipeline root (a model's config.json names files by name only)."""
    if cfg.data.bigquery:
        raise ConfigError([("--history", f"the model was trained on the BigQuery table "
                            f"{cfg.data.bigquery}: export the interactions to CSV (bq extract) "
                            "and pass the file as --history")])
    module = module_paths(os.path.join(model, "modules"))["trainer"]
    if os.path.exists(module):
        return frozen_config(module)["data"]["path"]
    if os.path.exists(cfg.data.path):
        return cfg.data.path
    raise ConfigError([("--history", f"the model names its training data only as "
                        f"{cfg.data.path!r}, which is not here: pass the interactions file as "
                        "--history, or give the pipeline root as --model")])


def read_queries(path: str, column: str) -> List[str]:
    """Distinct query ids of ``path`` (exactly as written) in order of first appearance."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file (--users)")
    textcheck.scan(path, one_ending=False)  # UTF-8, no NUL, no huge line: named by row
    header = textcheck.header(path) or []
    name = column if column in header else "user_id"
    if name not in header:
        raise DataError(f"{path}: no column {column!r} (data.query_id) or 'user_id'; "
                        f"columns are {header}")
    if textcheck.repeated_message(path, header, ignore_case=False):  # which one is the id?
        raise DataError(textcheck.repeated_message(path, header, ignore_case=False))
    seen: Dict[str, None] = {}
    for number, row in read_rows(path, [name]):
        value = row[name]
        if not value.strip():
            raise DataError(f"{path} row {number}: column {name!r} is empty")
        if "\n" in value or "\r" in value:  # as prepare refuses them: never a known id
            raise DataError(id_line_break(path, number, name, "--users", value))
        seen.setdefault(value, None)
    return list(seen)


def query_histories(cfg: Config, path: str, wanted: set) -> Dict[str, dict]:
    """Each wanted query's state now: ``{query: {'row', 'items', 'seen'}}``.

    ``row`` is its latest row (by timestamp, then file order), ``items`` its
    candidates newest first (as many as the longest history keeps), ``seen``
    every candidate it has in ``path``: the preparation program's window for
    held-out queries, with the cutoff at now and every row known
    (:mod:`pipelines.data.sql.serving`).
    """
    return states_now(cfg, path, wanted)


def serving_values(cfg: Config, described: List[dict], query: str, state: Optional[dict]) -> dict:
    """One query's value for each serving input (``described``: serving_inputs.json).

    An unknown value (a cold query, an empty cell) is sent as ``""`` or NaN,
    which the model replaces by the feature's configured default, exactly as
    training did for empty cells; an int64 (timestamp) input gets the default.
    """
    history = {history_column(f.name): cells for _, f in cfg.features()
               if (cells := history_of(f.__dict__))}
    values = {}
    for d in described:
        column, dtype = d["column"], d["dtype"]
        if d["input"] == "query_id":
            value = query
        elif column in history:
            max_length, separator = history[column]
            value = separator.join((state["items"] if state else [])[:max_length])
        else:
            value = state["row"].get(column, "") if state else ""
        if dtype == "string":
            values[d["input"]] = value
        elif dtype.startswith("int"):
            default = d.get("default")
            where = f"column {column!r} of query {query!r}"
            values[d["input"]] = (int(math.floor(parse_time(value, where,
                                                            cfg.data.timestamp_unit)))
                                  if value.strip() else int(default or 0))
        else:
            values[d["input"]] = float(value) if value.strip() else math.nan
    return values


@contextlib.contextmanager
def atomic_csv(path: str, escape_formulas: bool = True, extra: List[str] = ()):
    """A CSV writer (:class:`pipelines.csvsafe.Writer`) on a new file beside ``path``,
    renamed over it only when the block succeeds: a crash leaves no complete-looking file."""
    with written.atomic(path, "w", newline="", encoding="utf-8") as handle:
        writer = Writer(handle, escape_formulas)
        writer.writerow(list(HEADER) + list(extra))
        yield writer


def _write(writer, query, values, ids, scores, cold=False, table=None, width=0) -> int:
    """Writes one query's ranked ids with their scores, the cold flag and the candidate
    table's values (``table``: raw id -> values, ``width`` of them); returns how many
    (empty tail slots are skipped)."""
    rank = 0
    for cid, score in zip(ids, scores):
        if math.isnan(float(score)):
            raise RuntimeError(f"the model scored query {query!r} NaN (inputs {values}); "
                               "nothing was written")
        if not cid or not math.isfinite(float(score)):
            continue  # the catalog (or the query's own list) ran out
        rank += 1
        raw = cid.decode("utf-8")
        writer.writerow([query, raw, rank, f"{float(score):.6g}", int(cold)]
                        + (list((table or {}).get(raw, [""] * width)) if width else []))
    return rank


def _import_tensorflow_quietly() -> None:
    """Imports TensorFlow with its native start-up lines (cuFFT/cuDNN/cuBLAS factories,
    TF-TRT, CUDA drivers) kept off the terminal; they are shown only if the import fails."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow  # TensorFlow: off the CLI's fast path

            del tensorflow  # loaded once: recommend() uses it
        except BaseException:
            os.dup2(saved, 2)
            caught.seek(0)
            sys.stderr.write(caught.read().decode("utf-8", errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def recommend(model: str, users: str, k: int, out: str, history: Optional[str] = None,
              include_seen: bool = False, batch_size: int = 256, log=print,
              buy_again_out: Optional[str] = None, force: bool = False,
              escape_formulas: bool = True, progress=None,
              columns: Optional[List[str]] = None) -> dict:
    """Writes ``out`` (and ``buy_again_out``); returns ``{'queries', 'rows', 'model', 'cold',
    'short'}`` (and ``'buy_again_rows'``).

    ``out`` ranks candidates each query did not have in ``history`` (all of them with
    ``include_seen``); ``buy_again_out`` ranks the candidates it did have, by the model.
    ``force`` replaces output files twotower did not write (never an input).
    ``columns``: the candidate table's columns to add (None: all of them, ``[]``: none).
    ``progress``, if given, is called as ``progress(answered, queries)`` before the first
    batch and after each one.
    """
    if isinstance(k, bool) or not 1 <= k <= 10_000:
        raise ConfigError([("--k", f"must be in 1..10000, got {k}")])
    if isinstance(batch_size, bool) or not 1 <= batch_size <= 100_000:
        raise ConfigError([("--batch-size", f"must be in 1..100000, got {batch_size}")])
    model_dir = find_model(model, log)
    cfg = model_config(model_dir)
    history = history or default_history(model, cfg)
    outputs = {"--out": out, "--buy-again-out": buy_again_out}
    sources = dict(training_files(model, cfg), **{"--users": users, "--history": history})
    written.check(outputs, sources, force, folders={"the model": model_dir})
    if not os.path.isfile(history):
        raise DataError(f"{history}: no such file (--history)")
    with open(os.path.join(model_dir, "assets.extra", "serving_inputs.json"),
              encoding="utf-8") as handle:
        described = json.load(handle)
    queries = read_queries(users, cfg.data.query_id)
    textcheck.scan(history)
    names, table = candidate_table(model, cfg, columns)
    seen = query_histories(cfg, history, set(queries))
    log(f"model {model_dir}; {len(queries)} queries, {len(seen)} with rows in {history}")
    cold = [q for q in queries if q not in seen]
    if cold:
        log(f"warning: {len(cold)} of {len(queries)} queries have no rows in {history} (first: "
            f"{cold[0]!r}): the model never saw them, so each gets the cold-start answer "
            "(cold=1 in the output)")

    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    _import_tensorflow_quietly()  # only now: a bad invocation is refused before TF loads
    import tensorflow as tf  # TensorFlow: off the CLI's fast path

    if cfg.pipeline.serving_index == "scann":
        from trainer.serving import require_scann  # TensorFlow: off the CLI's fast path

        require_scann()  # registers the ScaNN ops the SavedModel uses
    loaded = tf.saved_model.load(model_dir)
    discover, again = loaded.signatures["recommend"], loaded.signatures.get("buy_again")
    if buy_again_out and again is None:
        raise ConfigError([("--buy-again-out", f"{model_dir} has no buy_again signature; it "
                            "was exported by an older version: re-run the pipeline")])
    dtypes = {d["input"]: tf.as_dtype(d["dtype"]) for d in described}
    n_rows, n_again, short = 0, 0, []

    def padded(lists):
        width = max(1, max(len(x) for x in lists))
        return tf.constant([x + [""] * (width - len(x)) for x in lists])

    if progress is not None:
        progress(0, len(queries))
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(atomic_csv(out, escape_formulas, names))
        again_writer = (stack.enter_context(atomic_csv(buy_again_out, escape_formulas, names))
                        if buy_again_out else None)
        for start in range(0, len(queries), batch_size):
            chunk = queries[start:start + batch_size]
            rows = [serving_values(cfg, described, q, seen.get(q)) for q in chunk]
            inputs = {name: tf.constant([r[name] for r in rows], dtype)
                      for name, dtype in dtypes.items()}
            had = [sorted(seen[q]["seen"]) if q in seen else [] for q in chunk]
            answer = discover(**inputs, exclude=padded([[] if include_seen else h for h in had]),
                              k=tf.constant(k, tf.int32))
            for query, values, ids, scores in zip(chunk, rows, answer["candidate_ids"].numpy(),
                                                  answer["scores"].numpy()):
                count = _write(writer, query, values, ids, scores, query not in seen, table,
                               len(names))
                n_rows += count
                if count < k:
                    short.append((query, count))
            if again_writer is not None:
                answer = again(**inputs, had=padded(had), k=tf.constant(k, tf.int32))
                for query, values, ids, scores in zip(chunk, rows, answer["candidate_ids"].numpy(),
                                                      answer["scores"].numpy()):
                    n_again += _write(again_writer, query, values, ids, scores,
                                      query not in seen, table, len(names))
            if progress is not None:
                progress(start + len(chunk), len(queries))
        # the outputs again, just before the renames: a file put there meanwhile is kept
        written.check(outputs, sources, force, folders={"the model": model_dir})
    written.record([p for p in (out, buy_again_out) if p], "recommend")
    report = {"queries": len(queries), "rows": n_rows, "model": model_dir,
              "cold": len(queries) - len(seen), "short": len(short)}
    log(f"wrote {n_rows} recommendations for {len(queries)} queries to {out}")
    if buy_again_out:
        report["buy_again_rows"] = n_again
        log(f"wrote {n_again} buy-again rankings (each query's own items) to "
            f"{buy_again_out}")
    if short:
        log(f"warning: {len(short)} queries got fewer than {k} recommendations, because the "
            f"catalog without their own items is smaller (first: {short[0][0]!r} got "
            f"{short[0][1]}); use --include-seen or a smaller --k")
    return report
