"""The run's terminal: a few lines for the user, everything else in the log on disk."""
import json
import logging
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from pipelines.terminal.console import PROGRESS_LOGGER, Console, root_cause


def test_capture_sends_library_and_child_output_to_the_log_only(tmp_path, capfd):
    console = Console(str(tmp_path / "logs"))
    before = logging.getLogger("absl").level
    with console.capture(["A", "B"]):
        console.say("hello user")
        print("library chatter on stdout")
        print("a warning on stderr", file=sys.stderr)
        subprocess.run([sys.executable, "-c", "print('child process output')"], check=True)
        logging.getLogger("absl").info("Component %s is running.", "B")
        logging.getLogger("absl").info("Component %s is finished.", "B")
        logging.getLogger(PROGRESS_LOGGER).info("epoch 1/2: loss 1.0")
        logging.getLogger("absl").setLevel(logging.ERROR)  # a library lowering verbosity
        logging.getLogger("absl").info("Component %s is running.", "A")
        logging.getLogger("absl").info("Component %s is finished.", "A")
    console.result("the result")
    out, err = capfd.readouterr()
    assert out.splitlines() == ["hello user", "[1/2] B ... done in 0 s",
                                "    epoch 1/2: loss 1.0", "[2/2] A ... done in 0 s",
                                "the result"], out
    assert err == ""
    log = open(os.path.join(tmp_path, "logs", "run.log"), encoding="utf-8").read()
    for text in ("hello user", "library chatter on stdout", "a warning on stderr",
                 "child process output", "epoch 1/2: loss 1.0", "the result"):
        assert text in log, text
    print("stdout is the terminal again")
    assert capfd.readouterr().out == "stdout is the terminal again\n"
    # the level before the run, not the library's ERROR (ignored while pinned), settable again
    assert logging.getLogger("absl").level == before != logging.ERROR
    assert "setLevel" not in vars(logging.getLogger("absl"))
    logging.getLogger("absl").setLevel(logging.WARNING)
    assert logging.getLogger("absl").level == logging.WARNING


def test_quiet_shows_only_results_and_verbose_streams_the_log(tmp_path, capfd):
    quiet = Console(str(tmp_path / "q"), "quiet")
    with quiet.capture([]):
        quiet.say("progress")
        print("chatter")
    quiet.result("result")
    assert capfd.readouterr().out == "result\n"
    loud = Console(str(tmp_path / "v"), "verbose")
    with loud.capture([]):
        print("chatter")
    assert "chatter" in capfd.readouterr().out


def test_root_cause_is_one_line_of_the_innermost_error():
    try:
        try:
            raise ValueError("top_k 500 is above the catalog's 150 candidates\nmore")
        except ValueError as inner:
            raise RuntimeError("component Trainer failed") from inner
    except RuntimeError as exc:
        assert root_cause(exc) == ("ValueError: top_k 500 is above the catalog's 150 candidates")


@pytest.mark.e2e
@pytest.mark.slow
def test_a_failing_component_is_one_line_and_the_log_has_the_traceback(tmp_path, small_data):
    """The Trainer refuses a cut-off larger than the catalog (known only from the data)."""
    from conftest import demo_raw
    from pipelines.config.schema import apply_overrides

    raw = apply_overrides(demo_raw(small_data), [f"pipeline.root={tmp_path / 'root'}",
                                                 "model.top_k=[10, 100]"])
    config = tmp_path / "config.json"
    config.write_text(json.dumps(raw), encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "pipelines", "run", "--config", str(config)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("pipeline failed: ValueError: ") and "100" in lines[0], lines
    log = os.path.join(tmp_path, "root", "b2b-demo", "logs", "run.log")
    assert lines[0].endswith(f" (full log: {os.path.realpath(log)})") and len(lines) == 1
    assert "Traceback (most recent call last)" in open(log, encoding="utf-8").read()
    assert "Traceback" not in done.stdout + done.stderr
    from pipelines.inspect import runs

    assert runs.read(os.path.join(tmp_path, "root", "b2b-demo", "logs"))[0]["status"] == "failed"


@pytest.mark.parametrize("columns", [120, 0])  # 0: a pseudo-terminal that reports no size
def test_a_terminal_gets_a_ticker_and_a_step_bar_and_the_log_does_not(tmp_path, columns):
    """On a TTY: the running component's elapsed time, the Trainer's steps with steps/s and
    ETA; the log holds exactly the lines a pipe would get."""
    import pty
    import select
    import time

    from pipelines.terminal.progress import STEPS_LOGGER

    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    terminal = os.fdopen(slave, "w", encoding="utf-8")
    console = Console(str(tmp_path / "logs"), stream=terminal)
    steps = logging.getLogger(STEPS_LOGGER)
    with console.capture(["Transform", "Trainer"]):
        logging.getLogger("absl").info("Component %s is running.", "Transform")
        time.sleep(2.3)  # the ticker redraws every second
        logging.getLogger("absl").info("Component %s is finished.", "Transform")
        logging.getLogger("absl").info("Component %s is running.", "Trainer")
        for step in range(1, 9):
            steps.info("step %d", step, extra={"step": (1, 2, step, 20)})
            time.sleep(0.05)
        logging.getLogger(PROGRESS_LOGGER).info("epoch 1/2: loss 1.0")
        logging.getLogger("absl").info("Component %s is finished.", "Trainer")
    assert not steps.handlers and steps.propagate  # nobody listens after the run
    terminal.close()
    shown = b""
    while select.select([master], [], [], 0.5)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    text = shown.decode("utf-8", errors="replace")
    assert "[1/2] Transform ... 00:02" in text, text  # the ticker, at 2 s
    assert "/20 [" in text and "step/s" in text and "epoch 1/2" in text, text  # tqdm's bar
    assert "[1/2] Transform ... done in 2 s" in text  # the line written again after it
    log = open(os.path.join(tmp_path, "logs", "run.log"), encoding="utf-8").read()
    mine = [line for line in log.splitlines() if not line[:4].isdigit()]  # not a record's
    assert mine == ["[1/2] Transform ...", " done in 2 s", "[2/2] Trainer ...",
                    "    epoch 1/2: loss 1.0", "[2/2] Trainer done in 0 s"], log
    assert "step/s" not in log and "00:0" not in log and "step 3" not in log
