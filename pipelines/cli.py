"""The ``twotower`` command line.

    twotower validate --config C [--set KEY=VALUE ...] [--no-data]
    twotower generate --config C --out DIR [--set ...]
    twotower prepare  --config C [--engine duckdb|bigquery] [--print-sql] [--out DIR]
    twotower run      --config C [--set ...] [--verbose | --quiet]
    twotower image    --config C [--out DIR] [--tag TAG]
    twotower compile  --config C --target vertex --image IMAGE [--out pipeline.json]
                      [--stage-dir DIR]
    twotower submit   --config C [--spec pipeline.json] [--wait] [--param epochs=N ...]
    twotower lr-check --config C [--rates 0.001,0.01] [--steps 300] [--set ...]
    twotower recommend --model RUN_OR_MODEL --users USERS.csv --k 100 --out RECS.csv
                       [--buy-again-out AGAIN.csv]
    twotower demo     [--root DIR] [--set ...] [--verbose | --quiet]
    twotower runs     ROOT
    twotower inspect  ROOT [--out DIR] [--query ID] [--candidate ID]
    twotower synth    --out DIR [--customers N --products N --purchases N --seed N]

Exit codes: 0 success, 2 invalid config or data (or a bad invocation), 1 a pipeline
component failed or the push gate refused the model (it did not beat popularity by the
configured margin). Every error is one line on stderr naming the key, file or row
(:mod:`pipelines.errors`); never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys

from pipelines.commands.backtest import cmd_backtest
from pipelines.commands.common import config_from
from pipelines.commands.local import cmd_demo, cmd_lr_check, cmd_run
from pipelines.commands.read import cmd_inspect, cmd_recommend, cmd_runs
from pipelines.commands.vertex import cmd_compile, cmd_image, cmd_submit
from pipelines.commands import serve
from pipelines.config import Config, ConfigError


def _tower_summary(cfg: Config, with_data: bool) -> str:
    from pipelines.summary import estimate_vocabularies, tower_summary
    from transform.naming import CANDIDATE_VOCAB, QUERY_VOCAB

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
    print(f"config OK (fingerprint {cfg.fingerprint()[:12]})")
    print(_tower_summary(cfg, with_data=not args.no_data))
    return 0


def cmd_generate(args) -> int:
    from pipelines import written
    from pipelines.codegen import TRAINER_FILE, TRANSFORM_FILE, write_modules

    cfg = config_from(args)
    targets = {f"--out ({name})": os.path.join(args.out, name)
               for name in (TRANSFORM_FILE, TRAINER_FILE)}
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
    from pipelines.data.sql.duck import program_text

    cfg = config_from(args)
    if args.print_sql and cfg.data.bigquery:  # the queries BigQueryExampleGen runs
        from pipelines.data.sql import bigquery

        sys.stdout.write(bigquery.program_text(cfg))
        return 0
    if args.print_sql or args.engine == "bigquery":
        if args.engine == "bigquery" and not args.print_sql:
            print("twotower prepare: BigQuery runs this program from the Vertex AI pipeline; "
                  "here it can only be printed: add --print-sql", file=sys.stderr)
            return 2
        try:
            text = program_text(cfg, args.engine)
        except ValueError as exc:  # a name BigQuery can't quote as one column
            raise ConfigError([("--engine", f"{args.engine}: {exc}")]) from None
        sys.stdout.write(text)
        return 0
    from pipelines.data.prepare import prepare
    from pipelines.runners.local import pipeline_dir

    if not args.out:
        from pipelines.local_paths import check_root

        check_root(cfg)
    out = args.out or os.path.join(pipeline_dir(cfg), "input")
    report = prepare(cfg, out)
    held = ", ".join(f"{report[f'{s}_rows']} {s}" for s in ("train", "eval", "test")
                     if f"{s}_rows" in report)
    print(f"prepared {report['rows']} interactions: {held} ({report['split_method']} split), "
          f"{report['catalog_candidates']} catalog candidates -> {out} (the SQL that ran: "
          f"{os.path.join(out, 'prepare.sql')})")
    return 0


def cmd_synth(args) -> int:
    from pipelines import written
    from pipelines.data.synthetic import FILES, generate

    for key in ("customers", "products", "purchases"):
        if getattr(args, key) < 1:
            raise ConfigError([(f"--{key}", f"must be at least 1, got {getattr(args, key)}")])
    written.check({f"--out ({name})": os.path.join(args.out, name) for name in FILES.values()},
                  force=args.force, make_dirs=True)
    paths = generate(args.out, customers=args.customers, products=args.products,
                     purchases=args.purchases, seed=args.seed)
    written.record(paths.values(), "synth")
    print("\n".join(f"wrote {p}" for p in paths.values()))
    return 0


class Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are one line (exit 2) like every other error."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="twotower", description=__doc__.split("\n")[0])
    sub = top.add_subparsers(dest="command", required=True)

    def with_config(name, help_text):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", required=True, help="YAML or JSON config file")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. training.learning_rate=0.01")
        return p

    p = with_config("validate", "check a config (and its data's columns)")
    p.add_argument("--no-data", action="store_true", help="do not read the data files")
    p.set_defaults(func=cmd_validate)
    force = dict(action="store_true", help="replace existing files twotower did not write "
                 "(never an input of the command)")
    p = with_config("generate", "write transform_module.py and trainer_module.py")
    p.add_argument("--out", required=True)
    p.add_argument("--force", **force)
    p.add_argument("--no-data", action="store_true", help="do not read the data files")
    p.set_defaults(func=cmd_generate)
    p = with_config("prepare", "run (or print) the data preparation SQL program")
    p.add_argument("--engine", choices=("duckdb", "bigquery"), default="duckdb")
    p.add_argument("--print-sql", action="store_true", help="print the program, run nothing")
    p.add_argument("--out", help="output directory (default: <pipeline.root>/input)")
    p.set_defaults(func=cmd_prepare)
    def output_flags(p):
        flags = p.add_mutually_exclusive_group()
        flags.add_argument("--verbose", action="store_true", help="stream the full log (TFX, "
                           "Beam, TensorFlow) and show tracebacks")
        flags.add_argument("--quiet", action="store_true", help="print only the result and "
                           "errors")
        return p

    output_flags(with_config("run", "run the local TFX pipeline")).set_defaults(func=cmd_run)
    p = output_flags(with_config("backtest", "judge a config on several eval windows back in "
                                             "time (pipelines <name>-w0, -w1, ...)"))
    p.add_argument("--windows", type=int, default=4,
                   help="eval windows, the newest first (default: 4)")
    p.set_defaults(func=cmd_backtest)
    p = with_config("compile", "compile the pipeline for Vertex AI Pipelines (offline)")
    p.add_argument("--target", choices=("vertex",), default="vertex")
    p.add_argument("--image", required=True, help="the training image (see twotower image)")
    p.add_argument("--out", default="pipeline.json", help="the PipelineSpec JSON to write")
    p.add_argument("--stage-dir", help="stage into this local folder in place of the gs:// "
                   "bucket (copy it to the bucket before submitting); the spec keeps the "
                   "gs:// paths")
    p.set_defaults(func=cmd_compile)
    p = with_config("submit", "submit a compiled pipeline to Vertex AI Pipelines")
    p.add_argument("--spec", default="pipeline.json", help="the compiled PipelineSpec JSON")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a pipeline parameter for this run: epochs, learning_rate or batch_size "
                        "(default: the values compiled from the config)")
    p.set_defaults(func=cmd_submit)
    p = with_config("image", "write the Vertex AI training image's Dockerfile")
    p.add_argument("--out", default="image", help="folder for the Dockerfile (default: image)")
    p.add_argument("--tag", help="image tag to print in the build command (default: "
                   "twotower-<pipeline.name>:<config fingerprint>)")
    p.add_argument("--force", **force)
    p.set_defaults(func=cmd_image)
    p = output_flags(with_config("lr-check", "learning-rate range test on the transformed data"))
    p.add_argument("--rates", help="comma-separated rates (default: the configured rate "
                   "x 0.1, 0.3, 1, 3, 10)")
    p.add_argument("--steps", type=int, default=300, help="training steps per rate")
    p.set_defaults(func=cmd_lr_check)
    p = sub.add_parser("recommend", help="top-k candidates for each query of a CSV")
    p.add_argument("--model", required=True, help="a pipeline root or a serving SavedModel")
    p.add_argument("--users", required=True, help="CSV with the data.query_id (or user_id) "
                   "column; each distinct id gets recommendations")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--out", required=True, help="output CSV: user_id,item_id,rank")
    p.add_argument("--history", help="interactions CSV the queries' features, histories and "
                   "exclusions come from (default: the model's data.path)")
    p.add_argument("--include-seen", action="store_true",
                   help="do not exclude the candidates a query already has in --history")
    p.add_argument("--buy-again-out", help="also write, per query, the candidates it already "
                   "had in --history ranked by the model (\"buy again\"), as user_id,item_id,rank")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--force", **force)
    p.add_argument("--escape-formulas", action=argparse.BooleanOptionalAction, default=True,
                   help="prefix ids a spreadsheet would run as formulas (=, +, -, @ ...) with "
                   "' (a reversible rule: docs/outputs.md); --no-escape-formulas writes the "
                   "ids exactly, for files only programs read")
    p.set_defaults(func=cmd_recommend)
    serve.add_parser(sub)
    p = output_flags(sub.add_parser("demo", help="run the pipeline on the embedded synthetic "
                                                 "dataset"))
    p.add_argument("--root", default="runs", help="the pipeline root (default runs): the demo "
                   "writes to ROOT/b2b-demo")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("inspect", help="figures, an HTML report and a summary of a run")
    p.add_argument("root", help="a pipeline folder (e.g. runs/b2b-demo) or a generated "
                   "trainer_module.py")
    p.add_argument("--out", help="folder for the PNGs and report.html (default: ROOT/inspect)")
    p.add_argument("--query", help="the held-out query to show the top-k of (default: the "
                   "first with held-out items)")
    p.add_argument("--candidate", help="the candidate to show the neighbours of (default: the "
                   "most frequent)")
    p.add_argument("--k", type=int, default=10)
    output_flags(p).set_defaults(func=cmd_inspect)
    p = sub.add_parser("runs", help="list a pipeline's runs, newest first")
    p.add_argument("root", help="the pipeline folder (<pipeline.root>/<pipeline.name>, e.g. "
                   "runs/b2b-demo)")
    p.set_defaults(func=cmd_runs)
    p = sub.add_parser("synth", help="write the synthetic B2B dataset")
    p.add_argument("--out", required=True)
    p.add_argument("--customers", type=int, default=600)
    p.add_argument("--products", type=int, default=400)
    p.add_argument("--purchases", type=int, default=20_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--force", **force)
    p.set_defaults(func=cmd_synth)
    return top


def main(argv=None) -> int:
    import warnings

    # Google's client libraries warn at import that Python 3.10 (TFX 1.16's) is old: known
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parser().parse_args(argv)
    from pipelines.errors import handled

    return handled(args.command, lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
