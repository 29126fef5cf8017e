"""The command line's conventions: help on every option, its default shown, examples on top,
``--version``, a bare ``twotower`` shows the help, one error prefix."""
import argparse

import pytest

from pipelines.cli.main import main, parser
from pipelines.version import __version__


def subcommands():
    top = parser()
    actions = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return actions[0].choices


def test_every_subcommand_is_listed_with_a_help_line():
    listed = {a.dest: a.help for a in
              next(a for a in parser()._actions
                   if isinstance(a, argparse._SubParsersAction))._choices_actions}
    assert set(listed) == set(subcommands()) and len(listed) >= 15
    assert all(text and len(text) > 10 for text in listed.values()), listed


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_every_option_has_help_and_its_default_is_shown(name):
    sub = subcommands()[name]
    text = sub.format_help()
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flag = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"{name} {flag}: no help"
        shown = action.default not in (None, False, [], argparse.SUPPRESS)
        if shown and action.option_strings:
            formatted = sub._get_formatter()._get_help_string(action) % vars(action)
            assert "default" in formatted and str(action.default) in formatted, \
                f"{name} {flag}: default {action.default!r} not shown"
            assert f"{action.default}" in " ".join(text.split()), (name, flag)


def test_a_default_is_never_said_twice():
    for name, sub in subcommands().items():
        for action in sub._actions:
            text = sub._get_formatter()._get_help_string(action) or ""
            assert text.count("(default:") <= 1, (name, action.option_strings, text)


def test_the_top_level_help_has_examples_and_the_error_convention(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "The ``twotower`` command line." not in out
    assert "examples:" in out and "twotower demo" in out and "twotower inspect" in out
    assert 'starts\nwith "error:"' in out or 'starts with "error:"' in " ".join(out.split())
    for name in subcommands():
        assert name in out, name


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"twotower {__version__}"


def test_a_bare_twotower_prints_the_help(capsys):
    assert main([]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("usage: twotower") and "examples:" in captured.out
    assert captured.err == ""


def test_a_usage_error_of_a_subcommand_names_it(capsys):
    with pytest.raises(SystemExit) as done:
        main(["recommend", "--k", "many"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: twotower recommend: ") and len(err.splitlines()) == 1


def test_errors_that_are_not_config_errors_do_not_say_invalid_config(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: RUN: ") and "invalid config" not in err
    assert main(["tensorboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: twotower tensorboard: ") and "invalid config" not in err
