"""`twotower recommend`, `inspect` and `runs`: what a finished run gives and shows."""
from __future__ import annotations

import os
import sys
import warnings

from tqdm import tqdm

from pipelines.cli.commands.common import output_mode
from pipelines.config.schema import ConfigError
from pipelines.data import written as outputs
from pipelines.inspect import runs
from pipelines.inspect.run import load
from pipelines.recommend import recommend
from pipelines.runners.local import resolve_pipeline_dir
from pipelines.terminal.console import Console
from pipelines.terminal.progress import width


def cmd_recommend(args) -> int:
    bar = None
    if sys.stderr.isatty():  # a bar over the users on a terminal; nothing in a pipe or log
        bar = tqdm(unit="user", desc="recommending", leave=False, file=sys.stderr,
                   **width(sys.stderr))

    def progress(answered, queries):
        if bar.total != queries:
            bar.reset(total=queries)
        bar.update(answered - bar.n)

    def log(text):  # recommend()'s lines, printed above the bar
        bar.write(text, file=sys.stdout)

    try:
        recommend(args.model, args.users, args.k, args.out, history=args.history,
                  include_seen=args.include_seen, batch_size=args.batch_size,
                  buy_again_out=args.buy_again_out, force=args.force,
                  escape_formulas=args.escape_formulas, columns=args.columns,
                  **({"progress": progress, "log": log} if bar is not None else {}))
    finally:
        if bar is not None:
            bar.close()
    return 0


def cmd_inspect(args) -> int:
    from pipelines.inspect import report  # matplotlib: off the CLI's fast path

    if not os.path.exists(args.root):
        raise ConfigError([("RUN", f"{args.root} does not exist; give a pipeline folder (e.g. "
                            "runs/b2b-demo) or a generated trainer_module.py")])
    try:
        root = load(args.root)["root"]
        # With --out, everything (the report, the log of TensorFlow's chatter) goes there:
        # the run's folder is left byte for byte as it was.
        out = args.out or os.path.join(root, "inspect")
        # never a file the user put there (without --force), never into a model or input/
        outputs.check(report.outputs(out), force=args.force, make_dirs=True)
        console = Console(out if args.out else os.path.join(root, "logs"), output_mode(args),
                          name="inspect")
        with console.capture([]):  # TensorFlow's chatter goes to the log
            found = report.gather(args.root, query=args.query, candidate=args.candidate,
                                  k=args.k)
            written = report.write(found, out)
    except ConfigError:
        raise  # one `error:` line naming the option (pipelines/cli/errors.py)
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: twotower inspect: {str(exc).strip(chr(34) + chr(39))}", file=sys.stderr)
        return 2
    for line in report.summary(found):
        console.result(line)
    console.result(f"report: {written.pop('report')}")
    console.result(f"figures: {', '.join(os.path.basename(p) for p in written.values())} in "
                   f"{os.path.dirname(next(iter(written.values()), '')) or '-'}")
    return 0


def tensorboard_logs(root: str) -> str:
    """The TensorBoard folder of the newest training run under a pipeline folder:
    ``<run>/tfx/Trainer/model_run/<id>/logs`` (``train``/``validation``: Keras' per-epoch
    scalars; ``steps``: loss, gradient norms per tower, clip rate and learning rate every
    few steps and per epoch, trainer/monitoring.py)."""
    if not os.path.exists(root):
        raise ConfigError([("RUN", f"{root} does not exist; give a pipeline folder (e.g. "
                            "runs/b2b-demo)")])
    found = load(root)
    run_dir = found["model_run"]
    for problem in found["unreadable"]:  # the logs need no record: a warning, on stderr
        print(f"warning: {problem}", file=sys.stderr)
    logs = os.path.join(run_dir, "logs") if run_dir else ""
    if not logs or not os.path.isdir(logs):
        raise FileNotFoundError(f"{root}: no training run with TensorBoard logs yet; run the "
                                "pipeline first (twotower run --config C)")
    return logs


PORTS = (1, 65535)  # TCP's port numbers (0 would be any free port: not what a user opens)


def cmd_tensorboard(args) -> int:
    if isinstance(args.port, bool) or not PORTS[0] <= args.port <= PORTS[1]:
        raise ConfigError([("--port", f"must be in {PORTS[0]}..{PORTS[1]}, got {args.port}")])
    try:
        logs = tensorboard_logs(args.root)
    except FileNotFoundError as exc:
        print(f"error: twotower tensorboard: {str(exc).strip(chr(34) + chr(39))}", file=sys.stderr)
        return 2
    if args.print_logdir:
        print(logs)
        return 0
    trials = search_logs(args.root)
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    from tensorboard import program  # after the filter; TensorBoard (TensorFlow) off the CLI

    board = program.TensorBoard()
    if trials:  # the run's Tuner step: its trials beside the training (the HParams view)
        board.configure(logdir_spec=f"training:{logs},search:{trials}", host=args.host,
                        port=args.port)
    else:
        board.configure(logdir=logs, host=args.host, port=args.port)
    print(f"TensorBoard on {logs}" + (f" and the search's trials {trials} (HParams tab)"
                                      if trials else "")
          + f": http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    return board.main() or 0


def search_logs(root: str) -> str:
    """The TensorBoard runs of the newest run's Tuner step (one per trial, with the HParams
    plugin's data), or '' when it had none."""
    search = load(root).get("search")
    return (search or {}).get("tensorboard") or ""


def cmd_runs(args) -> int:
    if not os.path.isdir(args.root):
        raise ConfigError([("RUN", f"{args.root} is not a folder; give a pipeline folder, e.g. "
                            "runs/b2b-demo")])
    notes = []
    found = runs.read(os.path.join(resolve_pipeline_dir(args.root), "logs"), notes)
    for note in notes:  # a damaged line is named and skipped; the others are listed
        print(f"note: {note}", file=sys.stderr)
    print(runs.table(found))
    return 0
