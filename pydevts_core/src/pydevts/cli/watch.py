"""``pydevts node`` and ``pydevts watch``: run a node until Ctrl-C, printing events if asked."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from typing import Any, TextIO

import anyio
import anyio.abc

from ..members import MemberEvent
from ..node.core import Node
from .options import node_from_args

__all__ = ["EventPrinter", "run_node", "silence_stdout"]

log = logging.getLogger("pydevts.cli")

MEMBER_KINDS = ("joined", "left", "failed", "updated", "reaped")


def silence_stdout() -> None:
    """stdout's reader went away (``| head``): send the rest to /dev/null, as Unix tools would."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor behind stdout
        pass


def _word(text: str) -> str:
    """``text`` as is when it reads as one word, else quoted (one line, whatever it holds)."""
    return text if text and text.isprintable() and " " not in text else json.dumps(text)


def _payload(payload: Any) -> str:
    try:
        return json.dumps(payload, ensure_ascii=False, default=repr)
    except (TypeError, ValueError):  # e.g. keys JSON cannot have
        return repr(payload).replace("\n", "\\n")


class EventPrinter:
    """Writes each event that reaches the node, and each membership change, as one line on stdout::

        event "greet" from n1: {"text": "hi"}
        member n2 joined 127.0.0.1:41234 role=db

    (``pydevts node --print-events``, ``pydevts watch``). Create it inside the event loop.
    """

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out if out is not None else sys.stdout
        #: Set when stdout is gone (a closed pipe): the node should leave.
        self.closed = anyio.Event()

    async def event(self, name: str, sender: str, payload: Any) -> None:
        self.write(f"event {json.dumps(name, ensure_ascii=False)} from {_word(sender)}: {_payload(payload)}")

    async def lifecycle(self, event: MemberEvent) -> None:
        if event.kind in MEMBER_KINDS:
            m = event.member
            tags = "".join(f" {_word(k)}={_word(v)}" for k, v in m.tags.items())
            self.write(f"member {_word(m.id)} {event.kind} {m.address}{tags}")

    def write(self, line: str) -> None:
        if self.closed.is_set():
            return
        try:
            self.out.write(line + "\n")
            self.out.flush()
        except BrokenPipeError:
            silence_stdout()
            self.closed.set()


async def run_node(args: argparse.Namespace) -> int:
    """Run the node ``args`` describe until SIGINT/SIGTERM (or, printing events, a closed stdout)."""
    node = node_from_args(args)
    printer = EventPrinter() if args.print_events else None
    if printer is not None:
        node.on_unhandled(printer.event)
        node.on_lifecycle(printer.lifecycle)

    @node.on_lifecycle
    async def report(event: MemberEvent) -> None:
        if event.kind == "started":
            alive = [m.id for m in node.members if m.alive]
            log.info("members: %s", ", ".join(alive))

    try:
        await _serve(node, args, printer)
    except BaseExceptionGroup as group:  # a start error (refused, nothing to join): raise it bare
        leaves = _leaves(group)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise
    return 0


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


async def _serve(node: Node, args: argparse.Namespace, printer: EventPrinter | None) -> None:
    async with anyio.create_task_group() as tg:
        # The signal watcher starts before the node, so Ctrl-C also cuts a join short.
        await tg.start(_leave_on_signal, tg.cancel_scope)
        async with node:
            log.info("node %s running at %s (Ctrl-C to leave)", node.id, node.address)
            if args.command == "watch":
                print(
                    f"pydevts: watching cluster {node.cluster!r} as member {node.id} at {node.address}"
                    " (Ctrl-C to leave)",
                    file=sys.stderr,
                    flush=True,
                )
            if printer is None:
                await anyio.sleep_forever()
            else:
                await printer.closed.wait()
                log.info("stdout is closed: leaving the cluster")
                tg.cancel_scope.cancel()


async def _leave_on_signal(
    scope: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for _ in signals:
            log.info("leaving the cluster")
            scope.cancel()
            return
