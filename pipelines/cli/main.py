"""twotower: one YAML config in, a trained two-tower recommender out (TFX + TensorFlow
Recommenders), run here or on Vertex AI Pipelines.

examples:
  twotower demo                                  the whole pipeline on synthetic purchases
  twotower validate --config my.yaml             check a config and its data's columns
  twotower run --config my.yaml                  train, evaluate against popularity, push
  twotower tune --config my.yaml --trials 8      search hyperparameters; writes my.tuned.yaml
  twotower inspect runs/b2b-demo                 figures and an HTML report of a run
  twotower tensorboard runs/b2b-demo             TensorBoard on the newest training run
  twotower recommend --model runs/b2b-demo --users users.csv --out recs.csv
  twotower compile --config my.yaml --image IMAGE && twotower submit --config my.yaml

`twotower COMMAND --help` shows a command's options and their defaults.
Exit codes: 0 success; 2 an invalid config, data or invocation; 1 a pipeline component
failed or the push gate refused the model. Every error is one line on stderr that starts
with "error:" and names the key, file or row (pipelines/cli/errors.py); never a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

from pipelines.cli.commands.backtest import cmd_backtest
from pipelines.cli.commands.files import cmd_generate, cmd_prepare, cmd_synth, cmd_validate
from pipelines.cli.commands.local import cmd_demo, cmd_lr_check, cmd_run
from pipelines.cli.commands.tune import cmd_tune
from pipelines.cli.commands.read import cmd_inspect, cmd_recommend, cmd_runs, cmd_tensorboard
from pipelines.cli.commands.vertex import cmd_compile, cmd_image, cmd_submit
from pipelines.cli.errors import handled
from pipelines.version import __version__
from pipelines.cli.commands import serve
from pipelines.data.synth_limits import MAXIMUM as SYNTH_MAXIMUM


class Help(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's layout; adds ``(default: X)`` to an option that has one and
    whose help does not already say it (no ``default: None`` or ``False`` noise)."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if ("default" in text or default in (None, False, [], argparse.SUPPRESS)
                or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse, whose usage errors are one line (exit 2) like every other error."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", Help)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


FORCE = dict(action="store_true", help="replace existing files twotower did not write "
             "(never an input of the command)")
NO_DATA = dict(action="store_true", help="do not read the data files")
RUN_HELP = "the pipeline folder, <pipeline.root>/<pipeline.name> (e.g. runs/b2b-demo)"


def _output_flags(p):
    flags = p.add_mutually_exclusive_group()
    flags.add_argument("--verbose", action="store_true", help="stream the full log (TFX, "
                       "Beam, TensorFlow) and show tracebacks")
    flags.add_argument("--quiet", action="store_true", help="print only the result and errors")
    return p


def _local_commands(sub, with_config) -> None:
    p = with_config("validate", "check a config (and its data's columns)")
    p.add_argument("--no-data", **NO_DATA)
    p.set_defaults(func=cmd_validate)
    p = with_config("generate", "write transform/transform_module.py and trainer/trainer_module.py")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the two modules "
                   "(created if missing)")
    p.add_argument("--force", **FORCE)
    p.add_argument("--no-data", **NO_DATA)
    p.set_defaults(func=cmd_generate)
    p = with_config("prepare", "run (or print) the data preparation SQL program")
    p.add_argument("--engine", choices=("duckdb", "bigquery"), default="duckdb",
                   help="the SQL dialect; bigquery can only be printed here (with --print-sql)")
    p.add_argument("--print-sql", action="store_true", help="print the program, run nothing")
    p.add_argument("--out", metavar="DIR", help="output folder (default: "
                   "<pipeline.root>/<pipeline.name>/input)")
    p.set_defaults(func=cmd_prepare)
    _output_flags(with_config("run", "run the local TFX pipeline")).set_defaults(func=cmd_run)
    p = _output_flags(with_config("backtest", "judge a config on several eval windows back in "
                                              "time (pipelines <name>-w0, -w1, ...)"))
    p.add_argument("--windows", type=int, default=4, help="eval windows, the newest first")
    p.set_defaults(func=cmd_backtest)
    p = _output_flags(with_config("tune", "search hyperparameters on a validation slice of "
                                          "train; write <config>.tuned.yaml"))
    p.add_argument("--trials", type=int, help="trials to run (default: tuning.trials, 8); a "
                   "search started again resumes, never repeating a finished trial")
    p.add_argument("--out", metavar="FILE", help="the tuned config to write (default: "
                   "<config>.tuned.yaml beside the config)")
    p.add_argument("--force", **FORCE)
    p.set_defaults(func=cmd_tune)
    p = _output_flags(with_config("lr-check", "learning-rate range test on the transformed "
                                              "data"))
    p.add_argument("--rates", help="comma-separated rates (default: the configured rate "
                   "x 0.1, 0.3, 1, 3, 10)")
    p.add_argument("--steps", type=int, default=300, help="training steps per rate")
    p.set_defaults(func=cmd_lr_check)
    p = _output_flags(sub.add_parser("demo", help="run the pipeline on the embedded synthetic "
                                                  "dataset", formatter_class=Help))
    p.add_argument("--root", default="runs", metavar="DIR", help="the pipeline root: the demo "
                   "writes to DIR/b2b-demo")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of the demo's config (examples/b2b_demo.yaml)")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("synth", help="write the synthetic B2B dataset", formatter_class=Help)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for purchases.csv "
                   "(the interactions, with each customer's segment and region) and "
                   "products.csv (the candidate table)")
    p.add_argument("--customers", type=int, default=600, help="distinct customers (at most "
                   f"{SYNTH_MAXIMUM['customers']:,})")
    p.add_argument("--products", type=int, default=400, help="distinct products (at most "
                   f"{SYNTH_MAXIMUM['products']:,})")
    p.add_argument("--purchases", type=int, default=20_000, help="purchase rows (at most "
                   f"{SYNTH_MAXIMUM['purchases']:,})")
    p.add_argument("--seed", type=int, default=7, help="random seed, 0..2**32-1 (same seed, "
                   "same files)")
    p.add_argument("--force", **FORCE)
    p.set_defaults(func=cmd_synth)


def _vertex_commands(with_config) -> None:
    p = with_config("compile", "compile the pipeline for Vertex AI Pipelines (offline)")
    p.add_argument("--target", choices=("vertex",), default="vertex",
                   help="the orchestrator to compile for")
    p.add_argument("--image", required=True, help="the training image (see twotower image)")
    p.add_argument("--out", default="pipeline.json", help="the PipelineSpec JSON to write")
    p.add_argument("--stage-dir", metavar="DIR", help="stage into this local folder in place "
                   "of the gs:// bucket (copy it to the bucket before submitting); the spec "
                   "keeps the gs:// paths")
    p.add_argument("--force", **FORCE)
    p.set_defaults(func=cmd_compile)
    p = with_config("submit", "submit a compiled pipeline to Vertex AI Pipelines")
    p.add_argument("--spec", default="pipeline.json", help="the compiled PipelineSpec JSON "
                   "(what twotower compile --out wrote)")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a pipeline parameter for this run: epochs, learning_rate or batch_size "
                        "(default: the values compiled from the config)")
    p.set_defaults(func=cmd_submit)
    p = with_config("image", "write the Vertex AI training image's Dockerfile")
    p.add_argument("--out", default="image", metavar="DIR", help="folder for the Dockerfile")
    p.add_argument("--tag", help="image tag to print in the build command (default: "
                   "twotower-<pipeline.name>:<config fingerprint>)")
    p.add_argument("--force", **FORCE)
    p.set_defaults(func=cmd_image)


def _read_commands(sub) -> None:
    p = sub.add_parser("recommend", help="top-k candidates for each query of a CSV",
                       formatter_class=Help)
    p.add_argument("--model", required=True, metavar="RUN_OR_MODEL",
                   help="a pipeline folder or a serving SavedModel")
    p.add_argument("--users", required=True, help="CSV with the data.query_id (or user_id) "
                   "column; each distinct id gets recommendations")
    p.add_argument("--k", type=int, default=100, help="recommendations per query")
    p.add_argument("--out", required=True, help="output CSV: user_id,item_id,rank,score,cold "
                   "and the candidate table's columns")
    p.add_argument("--history", help="interactions CSV the queries' features, histories and "
                   "exclusions come from (default: the model's data.path)")
    p.add_argument("--include-seen", action="store_true",
                   help="do not exclude the candidates a query already has in --history")
    p.add_argument("--buy-again-out", help="also write, per query, the candidates it already "
                   "had in --history ranked by the model (\"buy again\"), with --out's columns")
    p.add_argument("--columns", type=lambda text: [c for c in text.split(",") if c],
                   default=None, help="the candidate table's columns to add to each row, e.g. "
                   "name,category (default: all of them; '' for none)")
    p.add_argument("--batch-size", type=int, default=256, help="queries per model call")
    p.add_argument("--force", **FORCE)
    p.add_argument("--escape-formulas", action=argparse.BooleanOptionalAction, default=True,
                   help="prefix ids a spreadsheet would run as formulas (=, +, -, @ ...) with "
                   "' (a reversible rule: docs/outputs.md); --no-escape-formulas writes the "
                   "ids exactly, for files only programs read")
    p.set_defaults(func=cmd_recommend)
    serve.add_parser(sub, Help)
    p = sub.add_parser("inspect", help="figures, an HTML report and a summary of a run",
                       formatter_class=Help)
    p.add_argument("root", metavar="RUN", help=RUN_HELP + ", or a generated trainer_module.py")
    p.add_argument("--out", metavar="DIR", help="folder for the PNGs, report.html and the "
                   "inspection log; the run's folder is then left untouched (default: "
                   "RUN/inspect, the log in RUN/logs)")
    p.add_argument("--query", help="the held-out query to show the top-k of (default: "
                   "typical, good and bad ones chosen from the held-out queries)")
    p.add_argument("--candidate", help="the candidate to show the neighbours of (default: the "
                   "most frequent in training)")
    p.add_argument("--k", type=int, default=10, help="recommendations and neighbours shown")
    p.add_argument("--force", **FORCE)
    _output_flags(p).set_defaults(func=cmd_inspect)
    p = sub.add_parser("runs", help="list a pipeline's runs, newest first", formatter_class=Help)
    p.add_argument("root", metavar="RUN", help=RUN_HELP)
    p.set_defaults(func=cmd_runs)
    p = sub.add_parser("tensorboard", help="serve the newest training run's TensorBoard logs",
                       formatter_class=Help)
    p.add_argument("root", metavar="RUN", help=RUN_HELP)
    p.add_argument("--port", type=int, default=6006, help="port to serve on")
    p.add_argument("--host", default="localhost", help="address to serve on (0.0.0.0: every "
                   "interface)")
    p.add_argument("--print-logdir", action="store_true", help="print the log folder and "
                   "exit (for `tensorboard --logdir $(twotower tensorboard RUN --print-logdir)`)")
    p.set_defaults(func=cmd_tensorboard)


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="twotower", description=__doc__)
    top.add_argument("--version", action="version", version=f"twotower {__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    def with_config(name, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--config", required=True, help="YAML or JSON config file")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. training.learning_rate=0.01 "
                       "(repeatable)")
        return p

    _local_commands(sub, with_config)
    _vertex_commands(with_config)
    _read_commands(sub)
    return top


def main(argv=None) -> int:
    # Google's client libraries warn at import that Python 3.10 (TFX 1.16's) is old: known
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    top = parser()
    args = top.parse_args(argv)
    if not args.command:  # a bare `twotower`: the help, not an error
        top.print_help()
        return 0

    return handled(args.command, lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
