"""Each touch of aioquic's internals (:mod:`pydevts_quic._aioquic`) against real aioquic connections.

aioquic is sans-IO: a client and a server ``QuicConnection`` are driven here
in memory, on a clock of the test's own, their datagrams handed across (or
dropped) by hand. Each test checks that what pydevts reads or writes still
means what pydevts takes it to mean, so that an aioquic upgrade that changes
one fails here, by name; and that :func:`~pydevts_quic._aioquic.check`
refuses an aioquic lacking one, loudly.
"""

from __future__ import annotations

import gc
import logging
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import aioquic
import aioquic.asyncio.server
import aioquic.quic.connection
import pytest
from aioquic.quic import events
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicErrorCode, QuicPacketType
from aioquic.quic.recovery import QuicPacketRecovery
from aioquic.quic.stream import QuicStreamSender
from pydevts.errors import ConfigurationError
from pydevts_quic import QUICTransport, _aioquic
from pydevts_quic._aioquic import (
    CHECKED_AGAINST,
    AioquicIncompatibleError,
    close_event,
    data_received,
    discard_state,
    install_read_credit,
    invalid_token_close,
    probe_timeout,
    pto_count,
    pull_header,
    quiet_log,
    stream_delivered,
    unacknowledged,
)
from pydevts_quic.tls import TLSSettings

ALPN = ["pydevts-compat-test"]
CLIENT_ADDR = ("10.0.0.1", 40000)
SERVER_ADDR = ("10.0.0.2", 4433)
STREAM = 0


class Pair:
    """A client and a server ``QuicConnection``, their datagrams carried in memory."""

    def __init__(self, **server_options: Any) -> None:
        self.now = 1000.0
        tls = TLSSettings()
        self.client = QuicConnection(configuration=tls.client_configuration("localhost", alpn_protocols=ALPN))
        self.server = QuicConnection(
            configuration=tls.server_configuration(alpn_protocols=ALPN, **server_options),
            original_destination_connection_id=self.client.original_destination_connection_id,
        )

    def connect(self) -> None:
        self.client.connect(SERVER_ADDR, now=self.now)
        self.settle()
        assert self.events(self.client, events.HandshakeCompleted), "no handshake"

    def deliver(self) -> int:
        """Hand every pending datagram across, both ways, until there are none; how many went."""
        moved = 0
        while True:
            batch = 0
            for data, _ in self.client.datagrams_to_send(now=self.now):
                self.server.receive_datagram(data, CLIENT_ADDR, now=self.now)
                batch += 1
            for data, _ in self.server.datagrams_to_send(now=self.now):
                self.client.receive_datagram(data, SERVER_ADDR, now=self.now)
                batch += 1
            if not batch:
                return moved
            moved += batch

    def settle(self, horizon: float = 1.0) -> None:
        """Deliver, then run the timers due within ``horizon`` s (acknowledgement delays, say), and again."""
        end = self.now + horizon
        for _ in range(1000):
            self.deliver()
            timers = [(t, q) for q in (self.client, self.server) if (t := q.get_timer()) is not None]
            due = [(t, q) for t, q in timers if t <= end]
            if not due:
                return
            self.now = max(self.now, min(t for t, _ in due))
            for t, quic in due:
                if t <= self.now:
                    quic.handle_timer(self.now)
        raise AssertionError("the pair never settled")

    def drop(self, quic: QuicConnection) -> int:
        """Lose everything ``quic`` has to send now."""
        return len(quic.datagrams_to_send(now=self.now))

    @staticmethod
    def events(quic: QuicConnection, kind: type[events.QuicEvent]) -> list[Any]:
        found: list[Any] = []
        while (event := quic.next_event()) is not None:
            if isinstance(event, kind):
                found.append(event)
        return found


@pytest.fixture
def pair() -> Pair:
    pair = Pair()
    pair.connect()
    return pair


# ----------------------------------------------------------------------------- flow control


def test_install_read_credit_holds_the_peer_to_what_was_granted() -> None:
    window = 20_000
    pair = Pair()
    credit = install_read_credit(pair.server, window)  # before the handshake: its parameters carry it
    pair.connect()
    pair.client.send_stream_data(STREAM, bytes(5 * window))
    pair.settle()
    assert data_received(pair.server) == window, "aioquic let the peer past the credit (or short of it)"
    assert credit.value == window  # aioquic's own doubling had no effect
    # Granting more (as the application reads) lets exactly that much more in.
    assert credit.grant(consumed=window, window=window, needed=1)
    pair.settle()
    assert data_received(pair.server) == 2 * window
    # A grant not worth telling the peer yet moves nothing.
    assert not credit.grant(consumed=window + 100, window=window, needed=1)
    assert credit.value == 2 * window


def test_without_read_credit_aioquic_raises_the_limit_on_its_own() -> None:
    """What ReadCredit is for: plain aioquic grants as data arrives, read or not."""
    window = 20_000
    pair = Pair(max_data=window)
    pair.connect()
    pair.client.send_stream_data(STREAM, bytes(5 * window))
    pair.settle()
    assert data_received(pair.server) == 5 * window


def test_data_received_counts_stream_bytes_as_they_arrive(pair: Pair) -> None:
    assert data_received(pair.server) == 0
    pair.client.send_stream_data(STREAM, bytes(5_000))
    pair.settle()
    assert data_received(pair.server) == 5_000
    assert sum(len(e.data) for e in pair.events(pair.server, events.StreamDataReceived)) == 5_000


# ----------------------------------------------------------------------------- sending


def test_unacknowledged_is_what_was_written_until_the_peer_acknowledges_it(pair: Pair) -> None:
    assert unacknowledged(pair.client, STREAM) == 0  # no such stream yet
    pair.client.send_stream_data(STREAM, bytes(10_000))
    assert unacknowledged(pair.client, STREAM) == 10_000
    pair.drop(pair.client)  # sent, then lost: still unacknowledged
    assert unacknowledged(pair.client, STREAM) == 10_000
    pair.client.send_stream_data(STREAM, bytes(3_000))
    assert unacknowledged(pair.client, STREAM) == 13_000
    pair.settle()  # retransmitted, acknowledged
    assert unacknowledged(pair.client, STREAM) == 0
    assert unacknowledged(pair.client, 4) == 0


def test_stream_delivered_once_the_end_of_stream_is_acknowledged(pair: Pair) -> None:
    assert stream_delivered(pair.client, STREAM)  # no such stream
    pair.client.send_stream_data(STREAM, bytes(1_000))
    pair.settle()
    assert not stream_delivered(pair.client, STREAM), "all acknowledged, but the stream goes on"
    pair.client.send_stream_data(STREAM, b"last", end_stream=True)
    assert not stream_delivered(pair.client, STREAM)
    pair.settle()
    assert stream_delivered(pair.client, STREAM)


# ----------------------------------------------------------------------------- closing


def test_close_event_is_set_as_the_close_begins_before_aioquic_reports_it(pair: Pair) -> None:
    assert close_event(pair.client) is None and close_event(pair.server) is None
    pair.client.close(error_code=0x1, reason_phrase="bye")
    event = close_event(pair.client)
    assert isinstance(event, events.ConnectionTerminated)
    assert (event.error_code, event.reason_phrase) == (0x1, "bye")
    assert not pair.events(pair.client, events.ConnectionTerminated)  # reported only after closing
    pair.deliver()
    closed = close_event(pair.server)  # the peer's close, as soon as it arrived
    assert closed is not None and closed.error_code == 0x1 and closed.reason_phrase == "bye"


def test_pto_count_rises_with_each_probe_timeout_without_acknowledgement(pair: Pair) -> None:
    assert pto_count(pair.client) == 0
    pair.client.send_stream_data(STREAM, bytes(1_000))
    pair.drop(pair.client)
    for expected in (1, 2, 3):
        timer = pair.client.get_timer()
        assert timer is not None
        pair.now = timer
        pair.client.handle_timer(pair.now)
        pair.drop(pair.client)  # the probes are lost too
        assert pto_count(pair.client) == expected
    pair.settle()  # acknowledged at last: the backoff ends
    assert pto_count(pair.client) == 0


def test_probe_timeout_follows_the_measured_round_trip() -> None:
    pair = Pair()
    before = probe_timeout(pair.client)  # from the initial RTT estimate
    assert before > 0
    pair.connect()  # round trips that take no time on the test's clock
    after = probe_timeout(pair.client)
    assert 0 < after < before


def test_discard_state_lets_a_connection_go_without_the_cycle_collector() -> None:
    def left_behind(discard: bool) -> bool:
        quic = Pair().server
        ref = weakref.ref(quic)
        if discard:
            discard_state(quic)
            assert not vars(quic)
        del quic
        return ref() is not None

    gc.collect()
    gc.disable()
    try:
        assert left_behind(discard=False), "aioquic's connection has no reference cycle any more"
        assert not left_behind(discard=True)
    finally:
        gc.enable()
        gc.collect()


# ----------------------------------------------------------------------------- packets and logs


def first_initial() -> tuple[QuicConnection, bytes]:
    client = QuicConnection(
        configuration=TLSSettings().client_configuration("localhost", alpn_protocols=ALPN)
    )
    client.connect(SERVER_ADDR, now=1000.0)
    (data, _), *_ = client.datagrams_to_send(now=1000.0)
    return client, data


def test_pull_header_reads_a_datagram_header() -> None:
    client, data = first_initial()
    header = pull_header(data, host_cid_length=8)
    assert header.packet_type == QuicPacketType.INITIAL
    assert header.destination_cid == client.original_destination_connection_id
    assert header.source_cid == client.host_cid
    with pytest.raises(ValueError):
        pull_header(b"\xc0\x00", host_cid_length=8)


def test_invalid_token_close_ends_the_client_with_invalid_token() -> None:
    client, data = first_initial()
    header = pull_header(data, host_cid_length=8)
    assert header.version is not None
    close = invalid_token_close(
        version=header.version, source_cid=header.destination_cid, destination_cid=header.source_cid
    )
    assert isinstance(close, bytes)
    client.receive_datagram(close, SERVER_ADDR, now=1000.1)
    closed = close_event(client)
    assert closed is not None and closed.error_code == QuicErrorCode.INVALID_TOKEN


def aioquic_records(caplog: pytest.LogCaptureFixture, quiet: bool) -> list[logging.LogRecord]:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="quic"):
        pair = Pair()
        if quiet:
            quiet_log(pair.client)
            quiet_log(pair.server)
            quiet_log(pair.server)  # (twice is once)
        pair.connect()
    return [r for r in caplog.records if r.name == "quic"]


def test_quiet_log_moves_aioquic_info_to_debug_keeping_its_prefix(caplog: pytest.LogCaptureFixture) -> None:
    loud = aioquic_records(caplog, quiet=False)
    assert any(r.levelno == logging.INFO for r in loud), "aioquic no longer logs a handshake at INFO"
    quiet = aioquic_records(caplog, quiet=True)
    assert not [r for r in quiet if r.levelno == logging.INFO]
    assert all(r.getMessage().startswith("[") for r in quiet)  # "[connection id] ..."

    def said(records: list[logging.LogRecord]) -> list[str]:
        return sorted(r.getMessage().split("] ", 1)[1] for r in records)

    assert said(quiet) == said(loud)


# ----------------------------------------------------------------------------- the version check


def without_instance_attribute(cls: type, name: str) -> Callable[[pytest.MonkeyPatch], None]:
    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        init = cls.__init__  # type: ignore[misc]

        def init_without(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            delattr(self, name)

        monkeypatch.setattr(cls, "__init__", init_without)

    return patch


def without_module_attribute(module: Any, name: str) -> Callable[[pytest.MonkeyPatch], None]:
    def patch(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delattr(module, name)

    return patch


GONE = {
    "QuicConnection._loss._pto_count": without_instance_attribute(QuicPacketRecovery, "_pto_count"),
    "QuicConnection._local_max_data": without_instance_attribute(QuicConnection, "_local_max_data"),
    "QuicConnection._close_event": without_instance_attribute(QuicConnection, "_close_event"),
    "QuicConnection._streams": without_instance_attribute(QuicConnection, "_streams"),
    "QuicConnection._logger": without_instance_attribute(QuicConnection, "_logger"),
    "QuicConnection._streams[stream_id].sender._buffer_start": without_instance_attribute(
        QuicStreamSender, "_buffer_start"
    ),
    "QuicConnection._streams[stream_id].sender._buffer_stop": without_instance_attribute(
        QuicStreamSender, "_buffer_stop"
    ),
    "aioquic.asyncio.server._encode_invalid_token_close": without_module_attribute(
        aioquic.asyncio.server, "_encode_invalid_token_close"
    ),
    "aioquic.quic.connection.Limit": without_module_attribute(aioquic.quic.connection, "Limit"),
}


@pytest.fixture
def unchecked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As if no transport had been created yet in this process."""
    monkeypatch.setattr(_aioquic, "_verified", False)
    yield


def test_the_installed_aioquic_passes_the_check(unchecked: None) -> None:
    _aioquic.verify()
    _aioquic.check()
    assert _aioquic._verified


@pytest.mark.parametrize("missing", sorted(GONE))
def test_an_aioquic_without_one_of_the_internals_is_refused_loudly(
    missing: str, monkeypatch: pytest.MonkeyPatch, unchecked: None
) -> None:
    GONE[missing](monkeypatch)
    monkeypatch.setattr(aioquic, "__version__", "9.9")
    with pytest.raises(AioquicIncompatibleError) as caught:
        _aioquic.verify()
    assert str(caught.value) == (
        f"pydevts-quic was checked against aioquic {CHECKED_AGAINST}; aioquic 9.9 has no {missing}: "
        "upgrade pydevts-quic or pin aioquic"
    )


def test_creating_a_transport_runs_the_check(monkeypatch: pytest.MonkeyPatch, unchecked: None) -> None:
    GONE["QuicConnection._loss._pto_count"](monkeypatch)
    with pytest.raises(ConfigurationError, match=r"has no QuicConnection\._loss\._pto_count"):
        QUICTransport()
    monkeypatch.undo()  # aioquic as installed again
    monkeypatch.setattr(_aioquic, "_verified", False)
    QUICTransport()
    assert _aioquic._verified
