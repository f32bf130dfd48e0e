"""The ``lstmkit`` command line: ``--help`` and ``--version`` import no torch, every flag
has help text, bad input exits with status 2 naming the flag, the choices offered are the
library's own, and ``import lstmkit`` loads its names on first use."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import textwrap

import pytest

import lstmkit
from lstmkit import cli_names, options
from lstmkit.bench import catalog
from lstmkit.cli import build_parser, main

#: Run in a fresh interpreter: every command's help, then ``python -m lstmkit --help``.
NO_TORCH = textwrap.dedent(
    """
    import contextlib, io, runpy, sys
    from lstmkit.cli import build_parser, main
    for argv in (["--help"], ["lab", "--help"], ["train", "--help"], ["bench", "--help"],
                 ["--version"]):
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(argv) == 0, argv
    assert "torch" not in sys.modules, "building the parser imported torch"
    sys.argv = ["lstmkit", "--help"]
    try:
        runpy.run_module("lstmkit", run_name="__main__")
    except SystemExit as done:
        assert done.code == 0, done.code
    assert "torch" not in sys.modules, "python -m lstmkit --help imported torch"
    """
)


def test_help_and_python_dash_m_import_no_torch() -> None:
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: lstmkit")
    assert all(f"\n    {command} " in done.stdout for command in ("lab", "train", "bench"))


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"lstmkit {lstmkit.__version__}"
    assert importlib.metadata.version("lstmkit") == lstmkit.__version__


def test_every_flag_has_help_text() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in commands.items():
        for action in sub._actions:
            assert action.help, f"lstmkit {name} {action.option_strings} has no help"


def test_choices_are_the_librarys() -> None:
    from lstmkit.activations import CELL_ACTIVATIONS, GATE_ACTIVATIONS
    from lstmkit.backends import BACKEND_NAMES

    assert cli_names.BACKEND_NAMES == BACKEND_NAMES
    assert tuple(CELL_ACTIVATIONS) == options.CELL_ACTIVATIONS
    assert tuple(GATE_ACTIVATIONS) == options.GATE_ACTIVATIONS
    assert tuple(f"lstmkit-{b}" for b in BACKEND_NAMES) == catalog.BACKEND_IMPLS


def test_train_knows_the_librarys_option_defaults() -> None:
    """``lstmkit train`` passes lstmkit.LSTM only the options set away from these: its
    keywords' defaults, every cell option among them, each with a flag."""
    import inspect

    from lstmkit.train.command import LSTM_DEFAULTS

    signature = inspect.signature(lstmkit.LSTM).parameters
    assert {k: signature[k].default for k in LSTM_DEFAULTS} == LSTM_DEFAULTS
    assert options.defaults().items() <= LSTM_DEFAULTS.items()
    args = build_parser().parse_args(["train"])
    assert all(getattr(args, k) == v for k, v in LSTM_DEFAULTS.items())


def test_train_flags_and_variants_follow_the_option_table() -> None:
    """Every cell option has its flag, taking the option's example value, and its
    ``--compare`` variant."""
    from lstmkit.train.arguments import VARIANTS

    for option in options.OPTIONS:
        flag = [] if option.example is True else [str(option.example)]
        args = build_parser().parse_args(["train", option.flag, *flag])
        assert getattr(args, option.name) == option.example, option.name
        if option.in_cell:
            assert VARIANTS[option.variant] == {option.name: option.example}


@pytest.mark.parametrize(
    "argv, flag, said",
    [
        (["lab", "--backend", "nope"], "--backend", "invalid choice: 'nope'"),
        (["lab", "--seed", "x"], "--seed", "invalid int value: 'x'"),
        (["bench", "--impls", "torch,nope"], "--impls", "unknown implementation(s) nope"),
        (["bench", "--impls", "nope"], "--impls", "choose from torch, onnxruntime"),
        (["bench", "--shapes", "S9"], "--shapes", "unknown shape(s) S9; choose from S1"),
        (["bench", "--rounds", "0"], "--rounds", "expected an integer of at least 1, got '0'"),
        (["bench", "--threads", "0"], "--threads", "expected an integer of at least 1"),
        (["bench", "--json", "--markdown"], "--markdown", "not allowed with argument --json"),
        (["train", "--zoneout", "1.5"], "--zoneout", "zoneout should be in [0, 1), got 1.5"),
        (["train", "--zoneout", "x"], "--zoneout", "expected a number, got 'x'"),
        (["train", "--recurrent-dropout", "-0.1"], "--recurrent-dropout", "in [0, 1)"),
        (["train", "--dropout", "2"], "--dropout", "expected a number in [0, 1], got '2'"),
        (["train", "--activation", "gelu"], "--activation", "invalid choice: 'gelu'"),
        (["train", "--recurrent-activation", "tanh"], "--recurrent-activation", "choose from"),
        (["train", "--backend", "cuda"], "--backend", "invalid choice: 'cuda'"),
        (["train", "--num-layers", "0"], "--num-layers", "expected an integer of at least 1"),
        (["train", "--epochs", "0"], "--epochs", "expected an integer of at least 1, got '0'"),
        (["train", "--lr", "0"], "--lr", "expected a positive number, got '0'"),
        (["train", "--lr", "nan"], "--lr", "expected a positive number, got 'nan'"),
        (["train", "--gate-clip", "-1"], "--gate-clip", "gate_clip should be a positive finite"),
        (["train", "--cell-clip", "inf"], "--cell-clip", "cell_clip should be a positive finite"),
        (["train", "--forget-bias", "nan"], "--forget-bias", "forget_bias should be finite"),
        (["train", "--proj-size", "-1"], "--proj-size", "expected an integer of at least 0"),
        (["train", "--seeds", "0"], "--seeds", "expected an integer of at least 1, got '0'"),
        (["train", "--compare", "vanilla,bogus"], "--compare", "unknown variant(s) bogus"),
        (["train", "--resume", "--force"], "--force", "not allowed with argument --resume"),
        (["train", "--task", "weather"], "--task", "invalid choice: 'weather'"),
    ],
)
def test_bad_input_exits_2_naming_the_flag(
    argv: list[str], flag: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"lstmkit {argv[0]}: error: argument {flag}" in err and said in err, err


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "required: COMMAND" in capsys.readouterr().err


def test_import_lstmkit_loads_names_on_first_use() -> None:
    from lstmkit.lstm import LSTM

    assert lstmkit.LSTM is LSTM and "LSTM" in dir(lstmkit)
    assert lstmkit.functional.lstm is not None  # submodules too
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        lstmkit.nope  # noqa: B018
