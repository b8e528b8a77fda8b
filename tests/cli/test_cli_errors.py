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
