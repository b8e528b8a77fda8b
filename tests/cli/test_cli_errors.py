"""The CLI boundary turns any error into one named line (exit 2); ``--debug`` shows the trace."""

import pytest
import typer
from typer.testing import CliRunner

import membra.cli as cli


def _app_raising(exc: Exception) -> typer.Typer:
    app = typer.Typer(cls=cli._OneLineErrors)

    @app.command()
    def boom() -> None:
        raise exc

    @app.command()
    def other() -> None:  # a second verb, so `boom` is a sub-command as in membra
        pass

    return app


@pytest.mark.parametrize("exc, shown", [
    (ValueError("train.lr=1e300 is out of range"), "error: train.lr=1e300 is out of range"),
    (FileNotFoundError("data/x.bin not found"), "error: data/x.bin not found"),
    (RuntimeError("deep inside torch"), "error: RuntimeError: deep inside torch"),
    (ZeroDivisionError("division by zero"), "error: ZeroDivisionError: division by zero"),
])
def test_errors_become_one_line_and_exit_2(exc, shown, monkeypatch):
    monkeypatch.setitem(cli._DEBUG, "on", False)
    res = CliRunner().invoke(_app_raising(exc), ["boom"])
    assert res.exit_code == 2
    assert shown in res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_debug_lets_the_traceback_through(monkeypatch):
    monkeypatch.setitem(cli._DEBUG, "on", True)
    res = CliRunner().invoke(_app_raising(RuntimeError("deep")), ["boom"])
    assert isinstance(res.exception, RuntimeError)


def test_usage_errors_keep_their_own_status(monkeypatch):
    monkeypatch.setitem(cli._DEBUG, "on", False)
    res = CliRunner().invoke(_app_raising(ValueError("x")), ["nope"])
    assert res.exit_code == 2 and "No such command" in res.output


def test_root_debug_flag_is_accepted():
    res = CliRunner().invoke(cli.app, ["--debug", "models"])
    assert res.exit_code == 0
    cli._DEBUG["on"] = False


@pytest.mark.parametrize("extra", ["control", "plot", "export", "data"])
@pytest.mark.parametrize("cls", [ImportError, ModuleNotFoundError])
def test_missing_extra_is_one_line(extra, cls, monkeypatch):
    """An import error that names its install command is the user's fix: exactly that one
    line, no '--debug' hint."""
    monkeypatch.setitem(cli._DEBUG, "on", False)
    msg = f"X-v5 needs the package 'x': pip install 'membra[{extra}]'"
    res = CliRunner().invoke(_app_raising(cls(msg)), ["boom"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [f"error: {msg}"], res.output


@pytest.mark.parametrize("cls", [ImportError, ModuleNotFoundError])
def test_bare_import_error_keeps_the_debug_hint(cls, monkeypatch):
    """A raw import error (a bug or a broken install) still says how to get the traceback."""
    monkeypatch.setitem(cli._DEBUG, "on", False)
    res = CliRunner().invoke(_app_raising(cls("No module named 'x'")), ["boom"])
    assert res.exit_code == 2
    assert f"error: {cls.__name__}: No module named 'x'" in res.output
    assert "--debug" in res.output
