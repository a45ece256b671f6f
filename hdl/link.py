"""The board side of the host link (``docs/board.md``): framed requests in over a byte stream,
one response per request out, and numbered ports that carry records to and from cores' streams.

One concern: the protocol. The UART that carries the bytes is :mod:`hdl.uart`; which cores sit
behind which ports is a board top's choice (:mod:`boards.tops`).
"""

import enum
from contextlib import contextmanager

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

# The protocol's constants and the INFO block are defined once, host side.
from boards.protocol import (LINK_COUNTERS, MAGIC, PROTOCOL_VERSION, SYNC, Info, Port,
                             Command as LinkCommand, Status as LinkStatus)


__all__ = ["LinkController", "PortDirection", "record_bytes"]


class PortDirection(enum.Enum):
    """``SINK``: records from the host into a core's input stream; ``SOURCE``: a core's output
    stream to the host. (The values are the ``INFO`` block's direction codes.)"""
    SINK = 0
    SOURCE = 1


def record_bytes(layout):
    """Bytes of one record of a port whose stream payload has ``layout``."""
    return (Shape.cast(layout).width + 7) // 8


def _check_int(value, what, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{what} must be an integer between {low} and {high}, not {value!r}")
    return value


class LinkController(wiring.Component):
    """Parses request frames from ``rx``, executes them and sends one response frame on ``tx``.

    A request's payload is stored whole in a buffer of ``max_payload`` bytes and its CRC checked
    before anything is done; a ``WRITE`` then offers the records one by one to the port's
    stream, a ``READ`` collects records into the same buffer, and the response is sent from it.
    The controller never waits for a core longer than ``poll_timeout`` cycles, and never for the
    host longer than ``idle_timeout`` cycles in the middle of a request, so no stream and no
    line noise can wedge it. Bytes that arrive while a request is executed or answered are
    dropped (and counted as ``garbage``): the host waits for the response.

    Parameters
    ----------
    ports : sequence of (str, PortDirection, layout)
        The ports in number order: a member name, the direction, the stream payload's shape
        (a ``lib.data`` layout or an int width).
    max_payload : int
        Payload buffer size in bytes (16..65535); also the longest request and response payload.
    idle_timeout : int
        Cycles without a byte after which a request in progress is dropped (16..2^24).
    poll_timeout : int
        Cycles a ``WRITE`` waits for ``ready`` or a ``READ`` for ``valid`` before it answers
        with what it has (1..2^16).
    status_words : int
        Extra 32-bit status words from the top, reported after the link counters (0..32).
    build_id, clock_hz, baud : int
        Reported in the ``INFO`` block (32-bit each): the configuration's CRC-32, the ``sync``
        clock frequency in Hz and the UART's bit rate in bit/s.

    Attributes
    ----------
    rx : In(stream.Signature(8))
        Bytes from the host (always ready).
    rx_error : In(1)
        A pulse per character the UART dropped (framing error or overrun); counted.
    tx : Out(stream.Signature(8))
        Response bytes.
    status : In(data.ArrayLayout(32, status_words))
        The top's status words (present when ``status_words`` is not 0).
    <name> : Out(stream.Signature(layout)) for a sink, In(stream.Signature(layout)) for a source
        One per port.
    """

    def __init__(self, *, ports, max_payload=1024, idle_timeout, poll_timeout=256,
                 status_words=0, build_id=0, clock_hz=0, baud=0):
        self._ports = []
        names = set()
        for entry in ports:
            if not (isinstance(entry, tuple) and len(entry) == 3):
                raise TypeError(f"Port must be a (name, PortDirection, layout) tuple, "
                                f"not {entry!r}")
            name, direction, layout = entry
            if not isinstance(name, str) or not name.isidentifier() or name in names or name in (
                    "rx", "rx_error", "tx", "status"):
                raise ValueError(f"Port name must be a new identifier other than rx, rx_error, "
                                 f"tx and status, not {name!r}")
            if not isinstance(direction, PortDirection):
                raise TypeError(f"Port direction must be a PortDirection, not {direction!r}")
            names.add(name)
            self._ports.append((name, direction, layout))
        _check_int(len(self._ports), "Port count", 0, 255)
        self._max_payload = _check_int(max_payload, "Payload buffer size", 16, 65535)
        for name, _, layout in self._ports:
            if record_bytes(layout) + 1 > max_payload:
                raise ValueError(f"Record of port {name!r} ({record_bytes(layout)} bytes) does "
                                 f"not fit a payload of {max_payload} bytes")
        self._idle_timeout = _check_int(idle_timeout, "Idle timeout", 16, 1 << 24)
        self._poll_timeout = _check_int(poll_timeout, "Poll timeout", 1, 1 << 16)
        self._status_words = _check_int(status_words, "Status word count", 0, 32)
        self._build_id = _check_int(build_id, "Build ID", 0, (1 << 32) - 1)
        self._clock_hz = _check_int(clock_hz, "Clock frequency", 0, (1 << 32) - 1)
        self._baud = _check_int(baud, "Baud rate", 0, (1 << 32) - 1)

        members = {
            "rx": In(stream.Signature(8)),
            "rx_error": In(1),
            "tx": Out(stream.Signature(8)),
        }
        if status_words:
            members["status"] = In(data.ArrayLayout(32, status_words))
        for name, direction, layout in self._ports:
            flow = Out if direction is PortDirection.SINK else In
            members[name] = flow(stream.Signature(layout))
        super().__init__(members)

    @property
    def ports(self):
        return tuple(self._ports)

    @property
    def max_payload(self):
        return self._max_payload

    @property
    def status_count(self):
        """All status words: the link counters and the top's."""
        return len(LINK_COUNTERS) + self._status_words

    def info_block(self):
        """The ``INFO`` payload (``docs/board.md``)."""
        return Info(magic=MAGIC, version=PROTOCOL_VERSION,
                    ports=[Port(direction.name.lower(), record_bytes(layout))
                           for _, direction, layout in self._ports],
                    max_payload=self._max_payload, build_id=self._build_id,
                    clock_hz=self._clock_hz, baud=self._baud,
                    status_words=self.status_count).pack()

    def elaborate(self, platform):
        m = Module()
        N = self._max_payload
        ports = self._ports
        n_ports = len(ports)
        rec_bytes = [record_bytes(layout) for _, _, layout in ports]
        rec_max = max(rec_bytes, default=1)
        info = self.info_block()
        if len(info) > N:
            raise ValueError(f"INFO block ({len(info)} bytes) does not fit a payload of {N} "
                             f"bytes")

        m.submodules.buffer = buffer = Memory(shape=8, depth=N, init=[])
        wr = buffer.write_port()
        rd = buffer.read_port(transparent_for=())
        m.submodules.crc = crc = catalog.CRC16_XMODEM(data_width=8).create()
        m.submodules.info = info_rom = Memory(shape=8, depth=len(info), init=info)
        info_read = info_rom.read_port(transparent_for=())

        counters = Array(Signal(32, name=f"count_{name}") for name in LINK_COUNTERS)
        bump = {name: Signal(name=f"bump_{name}") for name in LINK_COUNTERS}
        for index, name in enumerate(LINK_COUNTERS):
            with m.If(bump[name]):
                m.d.sync += counters[index].eq(counters[index] + 1)
        m.d.comb += bump["rx_errors"].eq(self.rx_error)

        status_words = list(counters)
        if self._status_words:
            status_words += [self.status[n] for n in range(self._status_words)]
        status_words = Array(status_words)

        # Request fields.
        code = Signal(8)
        length = Signal(16)
        # Selectors of combinational muxes start away from the value they first take: Icarus
        # never evaluates a mux whose selector has not changed since time 0 (amaranth#1629).
        index = Signal(16, init=0xFFFF) # payload byte in a request; buffer address otherwise
        received_crc = Signal(16)
        too_long = Signal()
        port = Signal(8, init=0xFF)
        argument = Signal(16)           # READ's max_records
        port_ok = Signal()              # port exists and has the command's direction
        rec_size = Signal(range(rec_max + 1))
        rec_byte = Signal(range(rec_max + 1))   # byte within the record being received
        rec_count = Signal(16)          # whole records received
        idle = Signal(range(self._idle_timeout + 1))
        poll = Signal(range(self._poll_timeout + 1))

        # Response fields.
        status = Signal(8)
        out_length = Signal(16)
        record = Signal(8 * rec_max)
        done_records = Signal(16)
        fetched = Signal()

        def port_table(values):
            return Array(Const(v, 16) for v in values) if values else Array([Const(0, 16)])

        sizes = port_table(rec_bytes)
        directions = port_table([d.value for _, d, _ in ports])

        # Port streams: a sink presents ``record``; a source's payload is captured into it.
        sink_valid = Signal()
        source_ready = Signal()
        source_valid = Signal()
        source_payload = Signal(8 * rec_max)
        for number, (name, direction, layout) in enumerate(ports):
            member = getattr(self, name)
            width = Shape.cast(layout).width
            if direction is PortDirection.SINK:
                m.d.comb += [
                    member.payload.eq(record[:width]),
                    member.valid.eq(sink_valid & (port == number)),
                ]
            else:
                m.d.comb += member.ready.eq(source_ready & (port == number))
                with m.If(port == number):
                    m.d.comb += [
                        source_valid.eq(member.valid),
                        source_payload.eq(Value.cast(member.payload)),
                    ]
        sink_ready = Signal()
        for number, (name, direction, _) in enumerate(ports):
            if direction is PortDirection.SINK:
                with m.If(port == number):
                    m.d.comb += sink_ready.eq(getattr(self, name).ready)

        rx_byte = self.rx.payload
        m.d.comb += self.rx.ready.eq(1)
        m.d.comb += crc.data.eq(rx_byte)

        receiving = Signal()
        with m.If(receiving & ~self.rx.valid):
            m.d.sync += idle.eq(idle + 1)
        with m.Else():
            m.d.sync += idle.eq(0)
        timed_out = receiving & (idle == self._idle_timeout)

        def respond(m, code_value, length_value=0):
            m.d.sync += [status.eq(code_value), out_length.eq(length_value)]
            m.next = "SEND-HEADER"

        def nak(m, code_value, counter):
            m.d.comb += bump[counter].eq(1)
            respond(m, code_value)

        header = Signal(2, init=3)      # header byte being sent: code, length low, length high
        trailer = Signal(init=1)        # CRC byte being sent

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.rx.valid):
                    with m.If(rx_byte == SYNC):
                        m.d.comb += crc.start.eq(1)
                        m.next = "CODE"
                    with m.Else():
                        m.d.comb += bump["garbage"].eq(1)

            @contextmanager
            def byte_in(m):
                """The body runs when the request's next byte arrives; a request whose bytes
                stop for ``idle_timeout`` cycles is dropped."""
                m.d.comb += receiving.eq(1)
                with m.If(timed_out):
                    m.d.comb += bump["timeouts"].eq(1)
                    m.next = "IDLE"
                with m.Elif(self.rx.valid):
                    yield

            with m.State("CODE"):
                with byte_in(m):
                    m.d.comb += crc.valid.eq(1)
                    m.d.sync += code.eq(rx_byte)
                    m.next = "LENGTH-LOW"
            with m.State("LENGTH-LOW"):
                with byte_in(m):
                    m.d.comb += crc.valid.eq(1)
                    m.d.sync += length[:8].eq(rx_byte)
                    m.next = "LENGTH-HIGH"
            with m.State("LENGTH-HIGH"):
                with byte_in(m):
                    full = Cat(length[:8], rx_byte)
                    m.d.comb += crc.valid.eq(1)
                    m.d.sync += [
                        length[8:].eq(rx_byte),
                        too_long.eq(full > N),
                        index.eq(0),
                        rec_byte.eq(0),
                        rec_count.eq(0),
                        rec_size.eq(0),
                        port.eq(0),
                        argument.eq(0),
                    ]
                    with m.If(full == 0):
                        m.next = "CRC-LOW"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                with byte_in(m):
                    m.d.comb += crc.valid.eq(1)
                    m.d.comb += [
                        wr.addr.eq(index),
                        wr.data.eq(rx_byte),
                        wr.en.eq(~too_long),
                    ]
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == 0):
                        m.d.sync += [
                            port.eq(rx_byte),
                            rec_size.eq(Mux(rx_byte < n_ports, sizes[rx_byte], 0)),
                        ]
                    with m.Else():
                        with m.If(index <= 2):
                            m.d.sync += argument.eq(Cat(argument[8:], rx_byte))
                        with m.If(rec_byte + 1 == rec_size):
                            m.d.sync += [rec_byte.eq(0), rec_count.eq(rec_count + 1)]
                        with m.Else():
                            m.d.sync += rec_byte.eq(rec_byte + 1)
                    with m.If(index + 1 == length):
                        m.next = "CRC-LOW"
            with m.State("CRC-LOW"):
                with byte_in(m):
                    m.d.sync += received_crc[:8].eq(rx_byte)
                    m.next = "CRC-HIGH"
            with m.State("CRC-HIGH"):
                with byte_in(m):
                    m.d.sync += received_crc[8:].eq(rx_byte)
                    m.next = "CHECK"

            with m.State("CHECK"):
                m.d.sync += [index.eq(0), done_records.eq(0), poll.eq(0), fetched.eq(0)]
                m.d.comb += port_ok.eq((port < n_ports) & (rec_size != 0))
                with m.If(too_long):
                    nak(m, LinkStatus.TOO_LONG, "too_long")
                with m.Elif(crc.crc != received_crc):
                    nak(m, LinkStatus.BAD_CRC, "bad_crc")
                with m.Elif(code == LinkCommand.INFO):
                    with m.If(length == 0):
                        m.next = "COPY-INFO"
                    with m.Else():
                        nak(m, LinkStatus.BAD_REQUEST, "bad_request")
                with m.Elif(code == LinkCommand.STATUS):
                    with m.If(length == 0):
                        m.next = "COPY-STATUS"
                    with m.Else():
                        nak(m, LinkStatus.BAD_REQUEST, "bad_request")
                with m.Elif(code == LinkCommand.WRITE):
                    with m.If(port_ok & (directions[port] == PortDirection.SINK.value) &
                              (rec_count != 0) & (rec_byte == 0)):
                        m.d.sync += index.eq(1)
                        m.next = "LOAD"
                    with m.Else():
                        nak(m, LinkStatus.BAD_REQUEST, "bad_request")
                with m.Elif(code == LinkCommand.READ):
                    with m.If(port_ok & (directions[port] == PortDirection.SOURCE.value) &
                              (length == 3)):
                        m.next = "COLLECT"
                    with m.Else():
                        nak(m, LinkStatus.BAD_REQUEST, "bad_request")
                with m.Else():
                    nak(m, LinkStatus.UNKNOWN_COMMAND, "unknown_command")

            # INFO and STATUS: their answer is copied into the buffer, then sent like any other.
            with m.State("COPY-INFO"):
                # The ROM answers a cycle after its address: byte ``index - 1`` is written.
                m.d.comb += [info_read.addr.eq(index), wr.addr.eq(index - 1),
                             wr.data.eq(info_read.data), wr.en.eq(index != 0)]
                m.d.sync += index.eq(index + 1)
                with m.If(index == len(info)):
                    m.d.comb += bump["ok"].eq(1)
                    respond(m, LinkStatus.ACK, len(info))
            with m.State("COPY-STATUS"):
                words = 4 * self.status_count
                m.d.comb += [
                    wr.addr.eq(index),
                    wr.data.eq(status_words[index[2:]].word_select(index[:2], 8)),
                    wr.en.eq(1),
                ]
                m.d.sync += index.eq(index + 1)
                with m.If(index == words - 1):
                    m.d.comb += bump["ok"].eq(1)
                    respond(m, LinkStatus.ACK, words)

            # WRITE: records are read back from the buffer a byte a cycle into ``record``.
            with m.State("LOAD"):
                m.d.comb += rd.addr.eq(index)
                m.d.sync += [index.eq(index + 1), rec_byte.eq(0)]
                m.next = "LOAD-BYTE"
            with m.State("LOAD-BYTE"):
                m.d.comb += rd.addr.eq(index)
                m.d.sync += record.word_select(rec_byte, 8).eq(rd.data)
                with m.If(rec_byte + 1 == rec_size):
                    m.d.sync += poll.eq(0)
                    m.next = "PUSH"
                with m.Else():
                    m.d.sync += [index.eq(index + 1), rec_byte.eq(rec_byte + 1)]
            with m.State("PUSH"):
                m.d.comb += sink_valid.eq(1)
                m.d.sync += poll.eq(poll + 1)
                with m.If(sink_ready):
                    m.d.sync += done_records.eq(done_records + 1)
                    with m.If(done_records + 1 == rec_count):
                        m.next = "WRITE-DONE"
                    with m.Else():
                        m.next = "LOAD"
                with m.Elif(poll == self._poll_timeout - 1):
                    m.next = "WRITE-DONE"
            with m.State("WRITE-DONE"):
                m.d.comb += [wr.addr.eq(0), wr.data.eq(done_records[:8]), wr.en.eq(1)]
                m.next = "WRITE-DONE-HIGH"
            with m.State("WRITE-DONE-HIGH"):
                m.d.comb += [wr.addr.eq(1), wr.data.eq(done_records[8:]), wr.en.eq(1)]
                m.d.comb += bump["ok"].eq(1)
                respond(m, LinkStatus.ACK, 2)

            # READ: records are taken while they come and stored a byte a cycle.
            with m.State("COLLECT"):
                with m.If((done_records == argument) | (index + rec_size > N)):
                    m.d.comb += bump["ok"].eq(1)
                    respond(m, LinkStatus.ACK, index)
                with m.Elif(source_valid):
                    m.d.comb += source_ready.eq(1)
                    m.d.sync += [record.eq(source_payload), rec_byte.eq(0), poll.eq(0)]
                    m.next = "STORE"
                with m.Elif(poll == self._poll_timeout - 1):
                    m.d.comb += bump["ok"].eq(1)
                    respond(m, LinkStatus.ACK, index)
                with m.Else():
                    m.d.sync += poll.eq(poll + 1)
            with m.State("STORE"):
                m.d.comb += [
                    wr.addr.eq(index),
                    wr.data.eq(record.word_select(rec_byte, 8)),
                    wr.en.eq(1),
                ]
                m.d.sync += [index.eq(index + 1), rec_byte.eq(rec_byte + 1)]
                with m.If(rec_byte + 1 == rec_size):
                    m.d.sync += done_records.eq(done_records + 1)
                    m.next = "COLLECT"

            # The response: sync, code, length, payload from the buffer, CRC.
            with m.State("SEND-HEADER"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(SYNC)]
                with m.If(self.tx.ready):
                    m.d.comb += crc.start.eq(1)
                    m.d.sync += [header.eq(0), index.eq(0), fetched.eq(0)]
                    m.next = "SEND-FIELDS"
            with m.State("SEND-FIELDS"):
                byte = Array([status, out_length[:8], out_length[8:]])[header]
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte), crc.data.eq(byte)]
                with m.If(self.tx.ready):
                    m.d.comb += crc.valid.eq(1)
                    m.d.sync += header.eq(header + 1)
                    with m.If(header == 2):
                        m.d.sync += trailer.eq(0)
                        with m.If(out_length == 0):
                            m.next = "SEND-CRC"
                        with m.Else():
                            m.next = "SEND-PAYLOAD"
            with m.State("SEND-PAYLOAD"):
                m.d.comb += [rd.addr.eq(index), crc.data.eq(rd.data)]
                m.d.sync += fetched.eq(1)
                m.d.comb += [self.tx.valid.eq(fetched), self.tx.payload.eq(rd.data)]
                with m.If(self.tx.valid & self.tx.ready):
                    m.d.comb += [crc.valid.eq(1), rd.addr.eq(index + 1)]
                    m.d.sync += [index.eq(index + 1), fetched.eq(0)]
                    with m.If(index + 1 == out_length):
                        m.next = "SEND-CRC"
            with m.State("SEND-CRC"):
                m.d.comb += [self.tx.valid.eq(1),
                             self.tx.payload.eq(crc.crc.word_select(trailer, 8))]
                with m.If(self.tx.ready):
                    m.d.sync += trailer.eq(1)
                    with m.If(trailer):
                        m.next = "IDLE"

        # Bytes that come while a request is executed or answered are dropped.
        with m.If(self.rx.valid & ~receiving & ~fsm.ongoing("IDLE")):
            m.d.comb += bump["garbage"].eq(1)

        return m
