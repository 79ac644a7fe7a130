"""How a command fails: megasense's own errors and the OS's file errors in one line (exit 2), anything else
as a bug with its traceback and where to report it (exit 1). Tiny inputs; no model is loaded."""

from __future__ import annotations

import errno
import io

import pytest
import typer
from typer.testing import CliRunner

import megasense
import megasense.data.corpus
from megasense.cli.errors import REPORT, user_errors
from megasense.cli.main import _register, app
from megasense.errors import ConfigError, MegasenseInputError


def _cli(*args: str):
    if not any(c.name == "tokenize" for c in app.registered_commands):
        _register()
    return CliRunner().invoke(app, list(args))


def _one_line_error(result, *fragments: str) -> str:
    """The single ``error: ...`` line of a user's mistake: exit 2, nothing else on stderr, no traceback."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "please report" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _bug_report(result, exception: str) -> None:
    """A bug: exit 1, the traceback naming the exception, then the line asking to report it."""
    assert result.exit_code == 1, result.output
    assert "Traceback (most recent call last)" in result.stderr and exception in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert f"this is a bug in megasense {megasense.__version__}" in last and REPORT in last, last
    assert "error: " not in result.stderr


def test_a_megasense_error_in_a_command_is_one_line_and_exit_2(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one document\n", encoding="utf-8")
    result = _cli("train-tokenizer", str(corpus), "-o", str(tmp_path / "tok"), "--vocab-size", "10")
    assert _one_line_error(result) == "error: --vocab-size 10 is too small; use at least 64"
    assert not (tmp_path / "tok").exists()


def test_a_raised_megasense_error_keeps_its_brackets(tmp_path, monkeypatch):
    def refuse(patterns):
        raise MegasenseInputError("needs the extra: pip install 'megasense[onnx]'")

    monkeypatch.setattr(megasense.data.corpus, "expand_inputs", refuse)
    result = _cli("tokenize", str(tmp_path / "x.txt"), "-o", str(tmp_path / "ds"), "--no-progress")
    _one_line_error(result, "pip install 'megasense[onnx]'")  # escaped, not eaten as rich markup


def test_a_missing_input_file_is_one_line(tmp_path):
    missing = tmp_path / "nope.csv"
    result = _cli("predict", str(missing), "--no-progress")
    _one_line_error(result, str(missing), "no such file")
    result = _cli("tokenize", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "ds"), "--no-progress")
    _one_line_error(result, "nope.txt")


@pytest.mark.parametrize(
    "exception", [ZeroDivisionError("division by zero"), ValueError("a plain ValueError"), KeyError("text")]
)
def test_an_unexpected_exception_is_a_bug_with_its_traceback_and_exit_1(tmp_path, monkeypatch, exception):
    def broken(patterns):
        raise exception

    monkeypatch.setattr(megasense.data.corpus, "expand_inputs", broken)
    result = _cli("tokenize", str(tmp_path / "x.txt"), "-o", str(tmp_path / "ds"), "--no-progress")
    _bug_report(result, type(exception).__name__)
    assert "in broken" in result.stderr  # the frame that raised is in the traceback


def test_invalid_service_settings_are_one_line(tmp_path):
    pytest.importorskip("pydantic_settings")
    pytest.importorskip("fastapi")
    result = _cli("serve", "--port", "70000")
    _one_line_error(result, "port=70000", "65535")
    result = _cli("serve", "--config", str(tmp_path / "serve.toml"))
    _one_line_error(result, "serve.toml: settings file does not exist")
    (tmp_path / "serve.toml").write_text("prot = 1\n", encoding="utf-8")
    _one_line_error(_cli("serve", "--config", str(tmp_path / "serve.toml")), "prot: unknown setting")


def _run(exc: BaseException, capsys) -> tuple[int, str]:
    with pytest.raises(typer.Exit) as stopped, user_errors():
        raise exc
    return stopped.value.exit_code, capsys.readouterr().err


def test_os_errors_are_the_users_a_library_oserror_without_a_cause_is_a_bug(capsys):
    code, err = _run(OSError(errno.ENOSPC, "No space left on device", "out.csv"), capsys)
    assert (code, err) == (2, "error: out.csv: No space left on device\n")
    code, err = _run(PermissionError(errno.EACCES, "Permission denied", "/root/x"), capsys)
    assert (code, err) == (2, "error: /root/x: Permission denied\n")
    code, err = _run(ConfigError("tp=3 does not divide num_heads=4"), capsys)
    assert (code, err) == (2, "error: tp=3 does not divide num_heads=4\n")
    code, err = _run(io.UnsupportedOperation("not seekable"), capsys)
    assert code == 1 and "UnsupportedOperation: not seekable" in err and "please report" in err


@pytest.mark.parametrize("passes", [KeyboardInterrupt(), SystemExit(3), typer.Exit(0), typer.Abort()])
def test_interrupts_and_exits_pass_through(passes):
    with pytest.raises(type(passes)), user_errors():
        raise passes
