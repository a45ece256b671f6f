"""Board tops: cores behind the host link (``docs/board.md``), one UART pin in and one out.

A :class:`TopConfig` says which cores a top carries and with which parameters;
:class:`BoardTop` builds them, numbers their streams as link ports, and is the same design in
a bitstream (:mod:`boards.build` adds the clock and the pins) and in simulation
(:mod:`sim.board`). :data:`TOPS` holds the configuration of each board.
"""

import dataclasses
import zlib

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from boards.build import BOARDS
from hdl.link import LinkController, PortDirection
from hdl.uart import UARTReceiver, UARTTransmitter


__all__ = ["TopConfig", "BoardTop", "TOPS", "top_config"]


@dataclasses.dataclass(frozen=True)
class TopConfig:
    """What a board top carries.

    ``compress``, ``decompress``, ``mac``: keyword arguments of
    :class:`~hdl.compress_engine.CompressionEngine`,
    :class:`~hdl.decompress_engine.DecompressionEngine` and :class:`~hdl.mac.ShiftMACArray`,
    or ``None`` for a top without that core. ``clock_hz``: the ``sync`` clock in Hz;
    ``baud``: the UART bit rate in bit/s (``clock_hz / baud`` must be an integer, at least 4).
    ``fifo_depth``: entries of the queue after each engine's output (so a ``WRITE`` is not held
    up by the host's reads). ``max_payload``, ``idle_timeout_bits`` (in bit times),
    ``poll_timeout`` (cycles): the link's (:class:`~hdl.link.LinkController`).
    """

    name: str
    clock_hz: int
    baud: int
    compress: tuple = None
    decompress: tuple = None
    mac: tuple = None
    fifo_depth: int = 512
    max_payload: int = 1024
    idle_timeout_bits: int = 2000
    poll_timeout: int = 256

    def __post_init__(self):
        for field in ("compress", "decompress", "mac"):
            value = getattr(self, field)
            if isinstance(value, dict):       # stored as sorted items: hashable and ordered
                object.__setattr__(self, field, tuple(sorted(value.items())))
        if isinstance(self.clock_hz, bool) or not isinstance(self.clock_hz, int) \
                or self.clock_hz <= 0:
            raise ValueError(f"Clock frequency must be a positive integer (Hz), not "
                             f"{self.clock_hz!r}")
        if isinstance(self.baud, bool) or not isinstance(self.baud, int) or self.baud <= 0 \
                or self.clock_hz % self.baud or self.clock_hz // self.baud < 4:
            raise ValueError(f"Baud rate must divide the clock ({self.clock_hz} Hz) into an "
                             f"integer of at least 4 cycles per bit, not {self.baud!r}")
        if self.compress is None and self.decompress is None and self.mac is None:
            raise ValueError("A top needs at least one of compress, decompress and mac")

    @property
    def divisor(self):
        """Clock cycles per UART bit."""
        return self.clock_hz // self.baud

    def params(self, field):
        value = getattr(self, field)
        return None if value is None else dict(value)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def describe(self):
        """The configuration as canonical text; its CRC-32 is the build ID."""
        lines = [f"top {self.name}", f"clock_hz {self.clock_hz}", f"baud {self.baud}",
                 f"fifo_depth {self.fifo_depth}", f"max_payload {self.max_payload}",
                 f"idle_timeout_bits {self.idle_timeout_bits}",
                 f"poll_timeout {self.poll_timeout}"]
        for field in ("compress", "decompress", "mac"):
            value = getattr(self, field)
            lines.append(f"{field} {'none' if value is None else repr(value)}")
        return "\n".join(lines) + "\n"

    @property
    def build_id(self):
        return zlib.crc32(self.describe().encode())


# Bytes/s over a 3 Mbaud UART are about 300 k; every core here runs tens of millions of
# elements per second, so the UART limits, and the clock is chosen for an exact baud divisor.
def _on(board, **cores):
    """A top for ``board`` (a name in :data:`boards.build.BOARDS`, which gives the clock and
    the baud rate) with ``cores``."""
    spec = BOARDS[board]
    return TopConfig(name=board, clock_hz=spec.sys_hz, baud=spec.baud, **cores)


#: The cores of the 85k-LUT ECP5 boards: both engines (bf16 tensors, two element choices) and
#: a MAC array of four 8-lane units.
_ECP5_85_CORES = dict(
    compress=dict(in_format="bf16", elems=("e4m3", "e2m1"), block=32),
    decompress=dict(out_format="bf16", elems=("e4m3", "e2m1"), block=32, lanes=2),
    mac=dict(units=4, lanes=8, depth=256))

TOPS = {
    # The iCE40UP5K holds the link and one MAC unit of 8 lanes; neither engine fits (their
    # smallest builds alone need 5388 and 6031 of its 5280 logic cells).
    "icebreaker": _on("icebreaker", mac=dict(units=1, lanes=8, depth=64)),
    "ulx3s-85f": _on("ulx3s-85f", **_ECP5_85_CORES),
    "ecpix5-85": _on("ecpix5-85", **_ECP5_85_CORES),
}


def top_config(board):
    """The :class:`TopConfig` of ``board`` (a name in :data:`TOPS`)."""
    if board not in TOPS:
        raise ValueError(f"Board must be one of {', '.join(map(repr, TOPS))}, not {board!r}")
    return TOPS[board]


class BoardTop(wiring.Component):
    """The cores of a :class:`TopConfig` behind a UART link.

    Ports of the link, in number order (present when the top has the core):

    - ``compress_cfg`` (sink): :class:`~hdl.compress_engine.CompressionEngine` descriptors;
    - ``compress_in`` (sink): its element beats;
    - ``compress_out`` (source): its frame words (through a queue of ``fifo_depth``);
    - ``decompress_in`` (sink): :class:`~hdl.decompress_engine.DecompressionEngine` words;
    - ``decompress_out`` (source): its element beats (through a queue of ``fifo_depth``);
    - ``decompress_status`` (source): its per-frame status entries;
    - ``mac_cfg`` (sink): :data:`~hdl.mac.mac_config_layout`, held in a register that the
      :class:`~hdl.mac.ShiftMACArray` samples at each frame's first beat;
    - ``mac_in`` (sink): its beats; ``mac_read`` (sink): row addresses; ``mac_out`` (source):
      the rows read (through a queue as deep as the array's result memory).

    Status words after the link counters: ``compress_cfg_errors`` (malformed descriptors),
    ``mac_rows`` (rows the MAC array has written).

    Attributes
    ----------
    rx : In(1)
        UART line from the host (idles high).
    tx : Out(1)
        UART line to the host.
    """

    def __init__(self, config):
        if not isinstance(config, TopConfig):
            raise TypeError(f"Configuration must be a TopConfig, not {config!r}")
        from hdl.compress_engine import CompressionEngine
        from hdl.decompress_engine import DecompressionEngine
        from hdl.mac import ShiftMACArray, mac_config_layout
        self._config = config
        self.compress = self.decompress = self.mac = None
        ports, status = [], []
        if config.compress is not None:
            self.compress = CompressionEngine(**config.params("compress"))
            ports += [("compress_cfg", PortDirection.SINK, self.compress.cfg.payload.shape()),
                      ("compress_in", PortDirection.SINK, self.compress.i.payload.shape()),
                      ("compress_out", PortDirection.SOURCE, self.compress.o.payload.shape())]
            status.append("compress_cfg_errors")
        if config.decompress is not None:
            self.decompress = DecompressionEngine(**config.params("decompress"))
            ports += [("decompress_in", PortDirection.SINK, self.decompress.i.payload.shape()),
                      ("decompress_out", PortDirection.SOURCE,
                       self.decompress.o.payload.shape()),
                      ("decompress_status", PortDirection.SOURCE,
                       self.decompress.status.payload.shape())]
        if config.mac is not None:
            self.mac = ShiftMACArray(**config.params("mac"))
            ports += [("mac_cfg", PortDirection.SINK, mac_config_layout),
                      ("mac_in", PortDirection.SINK, self.mac.i.payload.shape()),
                      ("mac_read", PortDirection.SINK, self.mac.read.payload.shape()),
                      ("mac_out", PortDirection.SOURCE, self.mac.o.payload.shape())]
            status.append("mac_rows")
        self._status_names = tuple(status)
        self.link = LinkController(
            ports=ports, max_payload=config.max_payload,
            idle_timeout=config.idle_timeout_bits * config.divisor,
            poll_timeout=config.poll_timeout, status_words=len(status),
            build_id=config.build_id, clock_hz=config.clock_hz, baud=config.baud)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    @property
    def config(self):
        return self._config

    @property
    def port_names(self):
        """Link port names, in number order."""
        return tuple(name for name, _, _ in self.link.ports)

    @property
    def status_names(self):
        """Names of the top's status words (after the link counters)."""
        return self._status_names

    def elaborate(self, platform):
        m = Module()
        config = self._config
        m.submodules.link = link = self.link
        m.submodules.uart_rx = uart_rx = UARTReceiver(divisor=config.divisor)
        m.submodules.uart_tx = uart_tx = UARTTransmitter(divisor=config.divisor)
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx),
                     link.rx_error.eq(uart_rx.error)]
        wiring.connect(m, uart_rx.o, link.rx)
        wiring.connect(m, link.tx, uart_tx.i)

        def queued(name, source, sink, depth=config.fifo_depth):
            """``source`` to ``sink`` through a queue of ``depth`` entries."""
            width = Shape.cast(source.payload.shape()).width
            fifo = SyncFIFOBuffered(width=width, depth=depth)
            m.submodules[name] = fifo
            m.d.comb += [
                fifo.w_data.eq(source.payload), fifo.w_en.eq(source.valid),
                source.ready.eq(fifo.w_rdy),
                sink.payload.eq(fifo.r_data), sink.valid.eq(fifo.r_rdy),
                fifo.r_en.eq(sink.ready),
            ]

        status = []
        if self.compress is not None:
            m.submodules.compress = engine = self.compress
            wiring.connect(m, link.compress_cfg, engine.cfg)
            wiring.connect(m, link.compress_in, engine.i)
            queued("compress_queue", engine.o, link.compress_out)
            cfg_errors = Signal(32)
            with m.If(engine.cfg_error):
                m.d.sync += cfg_errors.eq(cfg_errors + 1)
            status.append(cfg_errors)
        if self.decompress is not None:
            m.submodules.decompress = engine = self.decompress
            wiring.connect(m, link.decompress_in, engine.i)
            queued("decompress_queue", engine.o, link.decompress_out)
            wiring.connect(m, engine.status, link.decompress_status)
        if self.mac is not None:
            from hdl.mac import mac_config_layout
            m.submodules.mac = mac = self.mac
            mac_cfg = Signal(mac_config_layout)
            m.d.comb += link.mac_cfg.ready.eq(1)
            with m.If(link.mac_cfg.valid):
                m.d.sync += mac_cfg.eq(link.mac_cfg.payload)
            m.d.comb += mac.cfg.eq(mac_cfg)
            wiring.connect(m, link.mac_in, mac.i)
            wiring.connect(m, link.mac_read, mac.read)
            # A row per address the host asked for: the queue holds a whole memory's worth, so
            # one WRITE of addresses and one READ of rows move a group of rows.
            queued("mac_queue", mac.o, link.mac_out, depth=mac.depth)
            status.append(mac.rows)
        for n, word in enumerate(status):
            m.d.comb += link.status[n].eq(word)
        return m
