"""Runs the preparation program with DuckDB: CSV in, typed Parquet splits out.

DuckDB runs out of core on every core. The CSV header is read with Python's
``csv`` module (for the same errors as before: missing file, empty file,
absent columns, byte-order mark); the rows are read by DuckDB with every cell
as text and no type guessing. A row's number is its record number in the file
(header = 1). Outputs go to a temporary directory that is swapped in whole
(:mod:`pipelines.data.output`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from typing import Dict, List, Optional

from sqlglot import exp

from pipelines.config.schema import Config
from pipelines.data.csvfile import DataError
from pipelines.data import textcheck
from pipelines.data.output import (MARKER, REPORT, SQL_FILE, check_replaceable, claim, swap_in,
                                   write_marker)
from pipelines.data.sql import checks
from pipelines.data.sql.plan import Plan, c, plan
from pipelines.data.sql.program import HELD, statements, weight_number
from pipelines.data.sql.queries import held_queries, outputs
from pipelines.data.sql.template import fill, ident, lit, render
from pipelines.data.written import new_folders, remove_new_folders
from transform.naming import CATALOG_SPLIT, queries_split



def is_parquet(path: str) -> bool:
    """A Parquet file (by its name); anything else is read as CSV."""
    return path.lower().endswith((".parquet", ".pq"))


def header(path: str) -> List[str]:
    """The file's column names. Raises DataError: missing, empty or not UTF-8."""
    if is_parquet(path):
        import pyarrow.parquet as pq  # pyarrow: off the CLI's fast path

        try:
            return list(pq.read_schema(path).names)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read as Parquet: {exc}") from None
    first = textcheck.header(path)  # only the header's bytes: a bad byte below is its row's
    if not first:
        raise DataError(f"{path} is empty: a CSV with a header row is needed")
    return first


def source(path: str, needed: List[str]) -> exp.Expression:
    """Every column of the file as text (DuckDB's ``rowid`` numbers the records from 0).

    A CSV's cells are read as written; a Parquet file's values are cast to
    text (DuckDB's casts: ``1.5``, ``2024-03-01 10:00:00``), in file order.
    """
    names = header(path)
    absent = [c for c in needed if c not in names]
    if absent:
        raise DataError(f"{path}: no column(s) {absent} (columns: {names})")
    if textcheck.repeated_message(path, names):
        raise DataError(textcheck.repeated_message(path, names))
    if is_parquet(path):
        return fill("SELECT P_cells FROM read_parquet(P_path)", P_path=lit(path), P_cells=[
            exp.alias_(exp.cast(exp.Column(this=ident(n)), "VARCHAR"), ident(n))
            for n in names])
    spec = exp.Struct(expressions=[exp.PropertyEQ(this=lit(n), expression=lit("VARCHAR"))
                                   for n in names])
    return fill("""SELECT * FROM read_csv(P_path, columns = P_spec, header = TRUE,
                                          auto_detect = FALSE, delim = ',', quote = '"',
                                          escape = '"')""", P_path=lit(path), P_spec=spec)


def program_text(cfg: Config, dialect: str = "duckdb") -> str:
    """The whole program as SQL text: sources, tables, checks are separate; outputs last."""
    p = plan(cfg)
    parts = [f"-- twotower data preparation for pipeline {cfg.pipeline.name!r}",
             "-- raw_interactions / raw_candidates: every CSV cell as text; rowid: the record index"]
    portable = dialect == "bigquery"  # BigQuery takes no per-row frame offsets (.histories)
    for name, tree in statements(p, portable=portable, parallel=portable):
        create = exp.Create(this=exp.to_table(name), kind="TABLE", expression=tree,
                            properties=exp.Properties(expressions=[exp.TemporaryProperty()]))
        parts.append(render(create, dialect, pretty=True) + ";")
    for split, tree in outputs(p, portable=portable).items():
        parts.append(f"-- output: {split}/data.parquet\n" + render(tree, dialect, pretty=True)
                     + ";")
    return "\n\n".join(parts) + "\n"


MEMORY_LIMIT = os.environ.get("TWOTOWER_PREPARE_MEMORY", "3GB")


class Runner:
    """A DuckDB connection that runs trees and turns engine errors into DataErrors."""

    def __init__(self, scratch: str):
        import duckdb  # DuckDB: off the CLI's fast path

        # Settings go in as values, never as SQL text. Naive times are UTC; beyond the memory
        # limit DuckDB spills to the scratch directory (out of core).
        self.con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT,
                                          "temp_directory": scratch})
        self.con.execute("SET TimeZone = 'UTC'")
        self.error = duckdb.Error

    def execute(self, tree: exp.Expression, where: str = ""):
        try:
            return self.con.execute(tree.sql(dialect="duckdb"))
        except self.error as exc:
            raise DataError(_explain(str(exc), where)) from None

    def copy(self, tree: exp.Expression, path: str, where: str) -> int:
        """Writes the query's rows to a Parquet file; returns how many."""
        sql = (f"COPY ({tree.sql(dialect='duckdb')}) TO {lit(path).sql(dialect='duckdb')} "
               "(FORMAT PARQUET)")  # both parts rendered by sqlglot from trees
        try:
            return self.con.execute(sql).fetchone()[0]
        except self.error as exc:
            raise DataError(_explain(str(exc), where)) from None

    def first(self, tree: exp.Expression) -> Optional[tuple]:
        return self.execute(tree).fetchone()

    def create(self, name: str, tree: exp.Expression, where: str = "") -> None:
        self.execute(exp.Create(this=exp.to_table(name), kind="TABLE", expression=tree,
                                properties=exp.Properties(expressions=[
                                    exp.TemporaryProperty()])), where)


def _explain(message: str, where: str) -> str:
    """One line from a DuckDB error, with the file and row when it names them."""
    line = re.search(r"CSV Error on Line: (\d+)", message)
    found = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", message)
    if line and found:
        return (f"{where} row {line.group(1)}: {found.group(2)} cells but the header has "
                f"{found.group(1)}; quote cells that contain the separator")
    if line and "unicode" in message.lower():
        return f"{where} near row {line.group(1)}: not UTF-8 text; save the file as UTF-8"
    if line:
        detail = [m for m in message.splitlines()[1:] if m.strip() and "Original Line" not in m]
        return (f"{where} row {line.group(1)}: not readable as CSV: "
                f"{(detail or message.splitlines())[0].strip()}")
    return f"{where or 'data preparation'}: {message.splitlines()[0]}"


def source_fingerprint(cfg: Config) -> str:
    """SHA-256 of the program and of every source file's bytes: equal, the output is too."""
    digest = hashlib.sha256(program_text(cfg).encode("utf-8"))
    paths = [cfg.data.path] + ([cfg.data.candidates.path] if cfg.data.candidates else [])
    for path in paths:
        digest.update(b"\0" + os.path.abspath(path).encode("utf-8") + b"\0")
        if is_parquet(path):
            try:
                with open(path, "rb") as handle:
                    for block in iter(lambda: handle.read(1 << 20), b""):
                        digest.update(block)
            except OSError as exc:
                raise DataError(f"{path}: cannot open: {exc.strerror}") from None
        else:  # a CSV's bytes are checked as they are hashed: UTF-8, no NUL, no huge line
            textcheck.scan(path, digest)
    return digest.hexdigest()


def reusable(out_dir: str, fingerprint: str) -> Optional[dict]:
    """The report of ``out_dir`` if it was prepared from exactly these sources, else None."""
    try:
        with open(os.path.join(out_dir, REPORT), encoding="utf-8") as handle:
            report = json.load(handle)
    except (OSError, ValueError):
        return None
    if not os.path.exists(os.path.join(out_dir, MARKER)):
        return None
    return report if report.get("source_fingerprint") == fingerprint else None


def _remove_stale(parent: str, base: str) -> None:
    """Removes what a killed preparation left (``.<base>.partial-<pid>`` of a dead pid)."""
    for name in os.listdir(parent):
        found = re.fullmatch(rf"\.{re.escape(base)}\.partial-(\d+)", name)
        if not found:
            continue
        try:
            os.kill(int(found.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
        except OSError:
            pass  # alive, someone else's


def prepare(cfg: Config, out_dir: str) -> dict:
    """Writes the typed splits under ``out_dir``; returns the report (also as JSON).

    When ``out_dir`` already holds the output of the same program on the same
    bytes (:func:`source_fingerprint`), it is kept as it is (``report['reused']``):
    the files keep their times, so ML Metadata's cache sees unchanged input.
    """
    p = plan(cfg)
    claim(out_dir)
    fingerprint = source_fingerprint(cfg)
    found = reusable(out_dir, fingerprint)
    if found is not None:
        return dict(found, reused=True)
    check_replaceable(out_dir)  # a user's file in it: refused now, before anything runs
    parent = os.path.dirname(os.path.abspath(out_dir))
    made = new_folders(parent)  # removed again (when empty) if the preparation fails
    os.makedirs(parent, exist_ok=True)
    _remove_stale(parent, os.path.basename(out_dir))
    tmp = os.path.join(parent, f".{os.path.basename(out_dir)}.partial-{os.getpid()}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        runner = Runner(os.path.join(tmp, ".scratch"))
        report = _run(runner, p, tmp)
        if source_fingerprint(cfg) != fingerprint:  # read twice: before and after
            raise DataError(f"{cfg.data.path}: the input changed while it was being read; "
                            "nothing was written: run again once it is complete")
        report["source_fingerprint"] = fingerprint
        runner.con.close()
        shutil.rmtree(os.path.join(tmp, ".scratch"), ignore_errors=True)
        with open(os.path.join(tmp, SQL_FILE), "w", encoding="utf-8") as handle:
            handle.write(program_text(cfg))
        with open(os.path.join(tmp, REPORT), "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, sort_keys=True)
        write_marker(tmp)  # lists what was written: only that is ever replaced
        swap_in(tmp, out_dir)
    except OSError as exc:  # e.g. the disk filled up: nothing half-written is left behind
        raise DataError(f"{exc.filename or out_dir}: cannot write: {exc.strerror}; nothing was "
                        "written (free some space, or set pipeline.root / --out elsewhere)") \
            from None
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
            remove_new_folders(made)  # failed: no empty folders left behind either
    return report


CHECKS = {"cand": checks.candidate_checks, "unfiltered": checks.filter_checks,
          "src": checks.interaction_checks}  # run once the table is made


def _tables(runner: Runner, p: Plan, last: str = "") -> Dict[str, object]:
    """Creates the program's tables (up to ``last``, default all), each followed by its
    checks; returns ``{'rows' (kept), 'counts' ({rank: rows}), 'total' (rows before the
    backtest window's cut), and what was dropped}`` (see :func:`dropped`)."""
    d = p.cfg.data
    if d.candidates:
        t = d.candidates
        runner.create("raw_candidates", source(t.path, list(p.kcol)), t.path)
    runner.create("raw_interactions", source(d.path, p.read), d.path)
    out: Dict[str, object] = {}
    for name, tree in statements(p):
        runner.create(name, tree, d.candidates.path if name == "cand" else d.path)
        if name in CHECKS:
            _raise(runner, CHECKS[name](p))
        if name == "src":
            out.update(dropped(runner, p))
        if name == "rows":
            (n,) = runner.first(fill("SELECT count(*) FROM rows"))
            if n < 2:
                raise DataError(f"{d.path}: {n} interaction rows; at least 2 are needed")
            out["total"] = n
        if name == "ranked":
            counts = dict(runner.execute(fill(
                "SELECT _rank, count(*) FROM ranked GROUP BY _rank")).fetchall())
            for split in p.splits:
                if not counts.get(HELD.get(split, 0)):
                    raise DataError(f"{d.path}: the {p.method} split leaves no {split} rows; "
                                    "change data.split.eval_fraction, test_fraction, the window "
                                    "(eval_days/test_days, eval_from/test_from) or method")
            out.update(counts=counts, rows=sum(counts.values()))
        if name == last:
            break
    return out


def dropped(runner: Runner, p: Plan) -> Dict[str, int]:
    """What the preparation dropped, in this order: rows that fail ``data.filter``
    (``filter_dropped_rows``), then rows of weight 0 (``weight_zero_rows``), then rows
    naming a candidate the table lacks (``missing_candidate_rows``, of
    ``missing_candidates`` distinct ids); only the keys the config asks for."""
    d = p.cfg.data
    out: Dict[str, int] = {}
    if d.filter:
        (every,) = runner.first(fill("SELECT count(*) FROM unfiltered"))
        (kept,) = runner.first(fill("SELECT count(*) FROM src"))
        out["filter_dropped_rows"] = every - kept
    positive = fill("TRUE")
    if d.weight:
        positive = exp.GT(this=weight_number(p), expression=exp.cast(lit(0.0), "DOUBLE"))
        (out["weight_zero_rows"],) = runner.first(fill(
            "SELECT count(*) FROM src WHERE NOT (P_w)", P_w=positive))
    if d.candidates and d.candidates.missing == "drop":
        out["missing_candidate_rows"], out["missing_candidates"] = runner.first(fill(
            "SELECT count(*), count(DISTINCT P_i) FROM src WHERE P_w AND P_i NOT IN "
            "(SELECT P_k FROM cand)", P_w=positive, P_i=c(p.item),
            P_k=c(p.kcol[d.candidates.id])))
    return out


def check(cfg: Config) -> Dict[str, object]:
    """``prepare``'s checks on the data, writing nothing: every row check, the filter, the
    weight and the join, and that each split has rows (through the ``ranked`` table).

    Not run: the histories, the held-out query states and the catalog's size,
    which only ``prepare`` computes. Returns :func:`_tables`'s counts.
    """
    p = plan(cfg)
    source_fingerprint(cfg)  # the same byte checks as prepare: UTF-8, no NUL, no huge line
    with tempfile.TemporaryDirectory(prefix="twotower-check-") as scratch:
        runner = Runner(os.path.join(scratch, "spill"))
        try:
            return _tables(runner, p, last="ranked")
        finally:
            runner.con.close()


def _run(runner: Runner, p: Plan, tmp: str) -> Dict[str, object]:
    d = p.cfg.data
    found = _tables(runner, p)
    counts, n = found.pop("counts"), found.pop("total")
    found.pop("rows")
    report: Dict[str, object] = {"rows": sum(counts.values()), "columns": list(p.types),
                                 "column_types": p.types, **found}
    for split, tree in outputs(p).items():
        os.makedirs(os.path.join(tmp, split))
        target = os.path.join(tmp, split, "data.parquet")
        written = runner.copy(tree, target, d.path)
        if split in p.splits:
            report[f"{split}_rows"] = written
        elif split == CATALOG_SPLIT:
            report["catalog_candidates"] = written
            _check_catalog(p.cfg, written)
        else:
            held = split[:-len("_queries")]
            assert queries_split(held) == split
            if written == 0:
                raise DataError(f"{d.path}: no {held} query has an interaction before its "
                                f"first {held} one, so the {held} evaluation would be empty; use "
                                "a user_time split or a larger eval_fraction")
            (total,) = runner.first(held_queries(p, held))
            report[f"{held}_queries"] = written
            report[f"{held}_cold_queries"] = total - written
    if d.repeats == "first":
        (dropped,) = runner.first(fill("SELECT count(*) FROM final WHERE _repeat"))
        report["repeats_dropped"] = dropped
    report["split_method"] = p.method
    report["eval_fraction"] = d.split.eval_fraction
    if d.split.test_fraction > 0:
        report["test_fraction"] = d.split.test_fraction
    if p.method in ("time", "days", "dates"):
        cut, test_cut = runner.first(fill("SELECT time_cut, test_cut FROM cuts"))
        report["time_cut"] = cut
        if "test" in p.splits:
            report["test_cut"] = test_cut
        if p.method == "time" and d.split.window:  # a backtest window: later rows left out
            report.update(window=d.split.window, window_end=test_cut,
                          rows_after_window=n - report["rows"])
    return report


def _check_catalog(cfg: Config, size: int) -> None:
    """A catalog of one candidate can't be ranked: found here, it costs no training. (Cut-offs
    above the catalog's size are refused by the Trainer, before it trains.)"""
    where = cfg.data.candidates.source if cfg.data.candidates else cfg.data.source
    if size < 2:
        raise DataError(f"{where}: the catalog has {size} candidate(s); retrieval ranks at "
                        "least 2 (every query would get the same answer)")


def _raise(runner: Runner, found) -> None:
    message = checks.failures(runner.first, found)
    if message:
        raise DataError(message)


__all__ = ["prepare", "program_text", "ident"]
