"""FAULTS.md stays true: every row of its tables names tests, and each named test exists."""
import ast
import os
import re

from conftest import ROOT

NODE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(\[[^`]*\])?`")


def defined_tests(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
            and n.name.startswith("test_")}


def test_every_fault_row_names_tests_that_exist():
    with open(os.path.join(ROOT, "FAULTS.md"), encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| Fault")
            and not set(line) <= set("|- ")]
    assert len(rows) >= 40
    missing = []
    for row in rows:
        found = NODE.findall(row.rsplit("|", 2)[-2])  # the Test column
        assert found, f"a row of FAULTS.md names no test: {row[:80]}"
        for path, name, _ in found:
            if not os.path.exists(os.path.join(ROOT, path)) or name not in defined_tests(path):
                missing.append(f"{path}::{name}")
    assert not missing, f"FAULTS.md names tests that do not exist: {missing}"
