"""`twotower validate`, `generate`, `prepare` and `synth`: a config or data in, files out."""
from __future__ import annotations

import json
import os
import sys

from pipelines.build.codegen import MODULE_FILES, module_paths, write_modules
from pipelines.cli.commands.common import config_from
from pipelines.config.schema import Config, ConfigError
from pipelines.data import written
from pipelines.data.prepare import check, dropped_text, prepare
from pipelines.data.sql import bigquery
from pipelines.data.sql.duck import program_text
from pipelines.data.synth_limits import size_problems
from pipelines.data.synthetic import FILES, generate
from pipelines.inspect.summary import estimate_vocabularies, tower_summary
from pipelines.local_paths import check_root
from pipelines.runners.local import pipeline_dir
from transform.naming import CANDIDATE_VOCAB, QUERY_VOCAB


def _tower_summary(cfg: Config, with_data: bool) -> str:
    sizes = estimate_vocabularies(cfg) if with_data and cfg.data.path else {}
    lines = []
    if sizes:
        lines.append(f"data: {sizes[QUERY_VOCAB]} query ids, {sizes[CANDIDATE_VOCAB]} candidate "
                     "ids (vocabulary sizes estimated from the CSV files)")
    for tower in ("query_tower", "candidate_tower"):
        tc = getattr(cfg, tower)
        got = tower_summary(cfg, tower, lambda name: sizes.get(name, 0))
        params = (f"{got['parameters']:,} parameters ({got['embedding_parameters']:,} in "
                  f"embeddings)" if sizes else
                  f"{got['dense_parameters']:,} dense parameters (embeddings need the data)")
        names = ", ".join(f"{f.name} ({f.kind})" for f in tc.features)
        lines.append(f"{tower}: input width {got['input_width']}, {params}, layers "
                     f"{list(tc.layers)} -> {cfg.model.output_dim}; features: {names}")
    return "\n".join(lines)


def cmd_validate(args) -> int:
    cfg = config_from(args)
    data = ""
    if not args.no_data and cfg.data.path:  # the rows, with prepare's checks: nothing written

        found = check(cfg)
        counts = found["counts"]
        held = ", ".join(f"{counts.get(rank, 0)} {split}" for rank, split in
                         enumerate(("train", "eval", "test")) if rank in counts)
        data = (f"data OK: {found['rows']} interactions pass prepare's checks ({held})"
                f"{dropped_text(found)}")
    print(f"config OK (fingerprint {cfg.fingerprint()[:12]})")
    for key, value, why, when, otherwise in getattr(cfg, "defaults_applied", []):
        verb = "+=" if isinstance(value, dict) and key.endswith(".features") else "="
        print(f"default {when}: {key} {verb} {json.dumps(value)}: {why}; {otherwise}.")
    if data:
        print(data)
    print(_tower_summary(cfg, with_data=not args.no_data))
    return 0


def cmd_generate(args) -> int:
    cfg = config_from(args)
    targets = {f"--out ({MODULE_FILES[key]})": path
               for key, path in module_paths(args.out).items()}
    written.check(targets, _config_inputs(args, cfg), args.force, make_dirs=True)
    paths = write_modules(cfg, args.out)
    written.record(paths.values(), "generate")
    print(f"wrote {paths['transform']}\nwrote {paths['trainer']}")
    return 0


def _config_inputs(args, cfg: Config) -> dict:
    """What a command given ``--config`` reads: the config and the data files it names."""
    inputs = {"--config": args.config, "data.path": cfg.data.path or ""}
    if cfg.data.candidates:
        inputs["data.candidates.path"] = cfg.data.candidates.path or ""
    return inputs


def cmd_prepare(args) -> int:
    cfg = config_from(args)
    if args.print_sql and cfg.data.bigquery:  # the queries BigQueryExampleGen runs

        sys.stdout.write(bigquery.program_text(cfg))
        return 0
    if args.print_sql or args.engine == "bigquery":
        if args.engine == "bigquery" and not args.print_sql:
            print("error: twotower prepare: BigQuery runs this program from the Vertex AI "
                  "pipeline; here it can only be printed: add --print-sql", file=sys.stderr)
            return 2
        try:
            text = program_text(cfg, args.engine)
        except ValueError as exc:  # a name BigQuery can't quote as one column
            raise ConfigError([("--engine", f"{args.engine}: {exc}")]) from None
        sys.stdout.write(text)
        return 0

    if not args.out:
        check_root(cfg)
    out = args.out or os.path.join(pipeline_dir(cfg), "input")
    report = prepare(cfg, out)
    held = ", ".join(f"{report[f'{s}_rows']} {s}" for s in ("train", "eval", "test")
                     if f"{s}_rows" in report)
    print(f"prepared {report['rows']} interactions: {held} ({report['split_method']} split), "
          f"{report['catalog_candidates']} catalog candidates -> {out}{dropped_text(report)} "
          f"(the SQL that ran: {os.path.join(out, 'prepare.sql')})")
    return 0


def cmd_synth(args) -> int:
    problems = size_problems(args.customers, args.products, args.purchases, args.seed)
    if problems:
        raise ConfigError([(f"--{key}", why) for key, why in problems])
    written.check({f"--out ({name})": os.path.join(args.out, name) for name in FILES.values()},
                  force=args.force, make_dirs=True)
    with written.terminated_is_an_exit():  # a stopped run removes its temporary files
        paths = generate(args.out, customers=args.customers, products=args.products,
                         purchases=args.purchases, seed=args.seed)
    written.record(paths.values(), "synth")
    print("\n".join(f"wrote {p}" for p in paths.values()))
    return 0
