"""Bad input to the `pydevts` command: one `error:` line and a non-zero status, never a traceback.

Each test runs the real command (``python -m pydevts``) as a subprocess.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
from agents import free_port
from pydevts.cli.commands import sent_to_text
from pydevts.cli.options import advertise_address, join_address

PYDEVTS = [sys.executable, "-m", "pydevts"]

pytestmark = pytest.mark.slow


def run(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PYDEVTS, *argv], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line, after checking there is nothing like a traceback."""
    assert "Traceback" not in done.stderr and "Exception" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines, "nothing on stderr"
    return lines[-1]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["node", "99999"], "argument cluster_port: port 99999 is out of range (1 to 65535)"),
        (["node", "0"], "argument cluster_port: port 0 is out of range (1 to 65535)"),
        (["node", "70o0"], "argument cluster_port: not a port number: '70o0'"),
        (["node", "7000", "--port", "99999"], "argument --port: port 99999 is out of range (0 to 65535)"),
        (
            ["node", "7000", "--advertise", "bad:addr:x"],
            "is neither HOST, HOST:PORT, [IPV6]:PORT nor an IPv6",
        ),
        (["node", "7000", "--advertise", "host:"], "'host:': the port is missing after ':'"),
        (["node", "7000", "--advertise", "host:x"], "'host:x': not a port number: 'x'"),
        (["node", "7000", "--advertise", "host:70000"], "port 70000 is out of range (1 to 65535)"),
        (["node", "7000", "--advertise", "a b"], "contains spaces or control characters"),
        (["node", "7000", "--advertise", "[::1"], "is not of the form [IPV6] or [IPV6]:PORT"),
        (["node", "7000", "--advertise", "[nope]:7000"], "'nope' is not an IPv6 address"),
        (["node", "7000", "--log-level", "verbose"], "argument --log-level: invalid choice: 'VERBOSE'"),
        (["node", "7000", "--tag", "foo"], "argument --tag: expected K=V, got 'foo'"),
        (["node", "7000", "--router-option", "=1"], "argument --router-option: expected K=V, got '=1'"),
        (["node", "7000", "--reap-after", "-1"], "argument --reap-after: expected a positive number"),
        (["members", "--join", "nohost"], "argument --join: 'nohost' is not of the form HOST:PORT"),
        (["members", "--join", "127.0.0.1:0"], "port 0 is out of range (1 to 65535)"),
        (
            ["members", "--join", "127.0.0.1:1", "--tag", "a=("],
            "argument --tag: 'a=(': not a regular expression",
        ),
        (["members", "--join", "127.0.0.1:1", "--state", "dead"], "invalid state 'dead' (choose from alive"),
        (["members", "--join", "127.0.0.1:1", "--timeout", "0"], "argument --timeout: expected a positive"),
        (["emit", "x", "{bad", "--join", "127.0.0.1:1"], "argument payload: not JSON"),
    ],
)
def test_bad_arguments_are_argparse_errors(argv: list[str], error: str) -> None:
    done = run(*argv)
    line = error_line(done)
    assert done.returncode == 2, done.stderr
    assert line.startswith(f"pydevts {argv[0]}: error: "), line
    assert error in line


def test_good_advertise_and_join_addresses_are_accepted() -> None:
    for text in ("::1", "[::1]", "[::1]:7000", "fe80::1%eth0", "example.org", "example.org.", "node_1:9000"):
        assert advertise_address(text) == text
    for text in ("10.1.2.3", "10.1.2.3:7000", "my-host.example.org:65535"):
        assert advertise_address(text) == text
    assert (join_address("[::1]:7000").host, join_address("[::1]:7000").port) == ("::1", 7000)
    assert str(join_address("db.example.org:7000")) == "db.example.org:7000"
    with pytest.raises(argparse.ArgumentTypeError):
        advertise_address("tab\there")


@pytest.mark.parametrize(
    ("option", "error"),
    [
        ("bogus=1", "transport 'tcp' from pydevts-tcp: unknown option(s): bogus (accepted: connect_timeout)"),
        (
            "connect_timeout=soon",
            "transport 'tcp' from pydevts-tcp: option connect_timeout='soon' is not a float",
        ),
        (
            "max_frame_size=1",
            "transport 'tcp' from pydevts-tcp: max_frame_size is set by the node, not as an option",
        ),
    ],
)
def test_bad_transport_options_name_the_plugin_and_the_option(option: str, error: str) -> None:
    done = run("node", str(free_port()), "--transport-option", option)
    assert done.returncode == 1
    assert error_line(done) == f"pydevts: error: {error}"


def test_a_typo_in_a_plugin_name_suggests_the_installed_one() -> None:
    done = run("node", str(free_port()), "--transport", "qiuc")
    assert done.returncode == 1
    line = error_line(done)
    assert line.startswith("pydevts: error: transport 'qiuc' is not installed or misspelled")
    assert "did you mean 'quic'?" in line and "pip install" not in line


def test_trio_missing_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "trio.py").write_text('raise ModuleNotFoundError("No module named \'trio\'", name="trio")\n')
    for argv in (["node", str(free_port())], ["demo"], ["watch", "--join", "127.0.0.1:1"]):
        done = run(*argv, "--backend", "trio", env={"PYTHONPATH": str(tmp_path)})
        assert done.returncode == 1
        assert error_line(done) == "pydevts: error: trio is not installed: pip install trio"


def test_demo_with_an_unknown_transport_says_so_at_once() -> None:
    done = run("demo", "--transport", "nosuch", timeout=10)
    assert done.returncode == 1
    assert error_line(done).startswith("pydevts: error: transport 'nosuch' is not installed")
    assert "no start within" not in done.stdout + done.stderr


def test_a_closed_stdout_ends_the_command_quietly() -> None:
    """`pydevts plugins | head -1`: the reader goes away; no BrokenPipeError traceback."""
    with subprocess.Popen(
        [*PYDEVTS, "plugins"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # before the command has written anything: its first write fails
        try:
            stderr = proc.stderr.read()
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == 141, stderr
    assert stderr == ""


def test_version_is_the_installed_core_version() -> None:
    done = run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"pydevts {importlib.metadata.version('pydevts-core')}"


def test_help_shows_every_default() -> None:
    node = run("node", "--help").stdout
    for text in ("(default: 1048576)", "(default: asyncio)", "(default: INFO)", "(default: 86400)"):
        assert text in " ".join(node.split()), text
    members = " ".join(run("members", "--help").stdout.split())
    assert "(default: 5.0)" in members and "(default: tcp)" in members and "(default: msgpack)" in members
    for out in (node, members, run("emit", "--help").stdout, run("watch", "--help").stdout):
        assert "(default: None)" not in out and "(default: False)" not in out and "(default: [])" not in out


def test_emit_says_how_many_nodes_in_words() -> None:
    assert sent_to_text("x", ["b"]) == "event 'x' sent to 1 node: b"
    assert sent_to_text("x", ["a", "b"]) == "event 'x' sent to 2 nodes: a, b"
    assert sent_to_text("x", []) == "event 'x' sent to no other node"
