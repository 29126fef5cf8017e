"""What the SQL program needs from the config: the :class:`Plan`, with the internal names.

:func:`plan` reads the config once; :mod:`.program` (the statements) and
:mod:`.histories` (the history cells) both read the plan it returns, so
neither needs the other's types. User columns get internal names (``c0``,
``c1``, ... for the interaction file, ``k0``, ... for the candidate table):
no user column can collide with the program's own (``_line``, ``_t``,
``_rank``).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Tuple

from sqlglot import exp

from pipelines.config.schema import Config
from pipelines.data.columns import column_types, output_columns
from transform.kinds import MOMENT, NUMBER, ONE_LINE, history_of, kind_of, raw_columns
from transform.naming import has_test_split, history_column


def c(name: str) -> exp.Column:
    """An internal column (a name the program made, never a config value)."""
    return exp.column(name)


@dataclasses.dataclass
class Plan:
    """What the program needs from the config, with the internal column names."""
    cfg: Config
    types: Dict[str, str]          # output column -> STRING/FLOAT/INT (histories included)
    base: List[str]                # output columns without histories
    col: Dict[str, str]            # interaction-side output column -> internal name
    kcol: Dict[str, str]           # candidate-table column -> internal name
    candidate_side: List[str]      # candidate feature columns other than the id
    numeric: List[str]
    one_line: List[str]
    stamps: List[str]              # timestamp-feature columns other than data.timestamp
    histories: Dict[str, Tuple[int, str]]  # history column -> (max_length, separator)
    method: str
    splits: Tuple[str, ...]        # held splits: ('train', 'eval') or with 'test'
    extra: List[str] = dataclasses.field(default_factory=list)  # read, not output: filter, weight

    @property
    def read(self) -> List[str]:
        """The interaction file's columns the program reads (the candidate table has the
        candidate-side ones, when given)."""
        d = self.cfg.data
        return [n for n in self.base if not d.candidates or n not in self.candidate_side] \
            + self.extra

    @property
    def cap(self) -> int:
        return max([n for n, _ in self.histories.values()] or [0])

    @property
    def unit(self) -> str:
        """What a numeric timestamp counts: ``s``, ``ms`` or ``us`` (data.timestamp_unit)."""
        return self.cfg.data.timestamp_unit

    @property
    def q(self) -> str:
        return self.col[self.cfg.data.query_id]

    @property
    def item(self) -> str:
        return self.col[self.cfg.data.candidate_id]


def split_method(cfg: Config) -> str:
    """``time`` when ``auto`` has a timestamp, ``hash`` without; else as configured."""
    method = cfg.data.split.method
    if method == "auto":
        return "time" if cfg.data.timestamp else "hash"
    return method


def plan(cfg: Config) -> Plan:
    d = cfg.data
    types = column_types(cfg)
    histories = {history_column(f.name): cells for _, f in cfg.features()
                 if (cells := history_of(f.__dict__))}
    base = [c for c in output_columns(cfg) if c not in histories]
    tower_columns = [c for t, f in cfg.features() if t == "candidate_tower"
                     for c in raw_columns(f.__dict__)]
    candidate_side = [c for c in dict.fromkeys(tower_columns) if c != d.candidate_id]
    checked = {}  # what the checks test in a column's cells (its kinds' cells) -> columns
    for _, f in cfg.features():
        for col in raw_columns(f.__dict__):
            checked.setdefault(kind_of(f.__dict__).cells, set()).add(col)
    one_line = sorted(checked.get(ONE_LINE, set()) - {d.query_id, d.candidate_id})
    table = [d.candidates.id] + candidate_side if d.candidates else []
    extra = [n for n in dict.fromkeys([f.column for f in d.filter] + (
        [d.weight] if d.weight else [])) if n not in base]
    return Plan(cfg=cfg, types=types, base=base, extra=extra,
                col={c: f"c{i}" for i, c in enumerate(base + extra)},
                kcol={c: f"k{i}" for i, c in enumerate(dict.fromkeys(table))},
                candidate_side=candidate_side, numeric=sorted(checked.get(NUMBER, set())),
                one_line=one_line,
                stamps=sorted(checked.get(MOMENT, set()) - {d.timestamp}),
                histories=histories, method=split_method(cfg),
                splits=("train", "eval", "test") if has_test_split(dataclasses.asdict(d.split))
                else ("train", "eval"))
