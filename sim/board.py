"""A board top in simulation, its UART bridged to TCP sockets, so the host code
(:mod:`boards.link`, :mod:`boards.host`) talks to the RTL exactly as to a board.

Python side: :class:`BoardSimulation` (a context manager) puts a :class:`boards.tops.BoardTop`
into a :class:`BoardHarness`, converts it to Verilog, starts the simulator in a thread and gives
the URL of the UART (``socket://127.0.0.1:PORT``, which ``serial.serial_for_url`` opens) and a
control channel (reset the board, wait, read the simulated time). Simulator side: the cocotb
test :func:`board_bridge` moves bytes between the data socket and the harness's host-side
byte queues.

The harness's host side is a UART of :mod:`hdl.uart` (tested on its own against a bit-level
Python model in ``tests/test_uart.py``) with a queue each way, so the board's pins see real
8N1 characters at its bit rate while the testbench handles whole bytes: a Python bit-banger
would cost a simulator callback per bit and run several times slower.

The heavy imports happen inside the Python-side functions, so that the testbench module stays
light inside the simulator.
"""

import json
import os
import socket
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, Timer


__all__ = ["BoardSimulation", "board_bridge"]


#: Clock period of the simulation, ns (its absolute value only scales the reported time).
_PERIOD_NS = 10


def _cycles(n):
    """A wait of ``n`` clock periods. (``ClockCycles`` would call back into Python on every
    edge; a timer calls back once.)"""
    return Timer(n * _PERIOD_NS * 1000, unit="ps")


# ---- Python side -------------------------------------------------------------------------------

def _harness_class():
    from amaranth.hdl import Elaboratable, Module, ResetInserter, Signal
    from amaranth.lib import stream, wiring
    from amaranth.lib.fifo import SyncFIFOBuffered
    from amaranth.lib.wiring import In, Out
    from hdl.uart import UARTReceiver, UARTTransmitter

    class BoardHarness(wiring.Component):
        """A board top with the host's side of its UART.

        ``host_i``: bytes the host sends (a queue of ``queue_depth``, then a UART transmitter
        on the top's ``rx``); ``host_o``: bytes the top sent (a UART receiver on its ``tx``,
        then a queue); ``host_error``: the receiver has seen a character without a stop bit
        (or its queue overflowed) since the start;
        ``board_rst``: resets the top alone (the host side keeps its state, as a real host
        does when a board is reset)."""

        def __init__(self, top, *, queue_depth=2048):
            self.top = top
            self._queue_depth = queue_depth
            super().__init__({
                "host_i": In(stream.Signature(8)),
                "host_o": Out(stream.Signature(8)),
                "host_error": Out(1),
                "board_rst": In(1),
            })

        def elaborate(self, platform):
            m = Module()
            divisor = self.top.config.divisor
            m.submodules.top = ResetInserter({"sync": self.board_rst})(self.top)
            m.submodules.host_tx = host_tx = UARTTransmitter(divisor=divisor)
            m.submodules.host_rx = host_rx = UARTReceiver(divisor=divisor)
            m.submodules.to_board = to_board = SyncFIFOBuffered(width=8,
                                                                 depth=self._queue_depth)
            m.submodules.from_board = from_board = SyncFIFOBuffered(width=8,
                                                                    depth=self._queue_depth)
            m.d.comb += [
                to_board.w_data.eq(self.host_i.payload), to_board.w_en.eq(self.host_i.valid),
                self.host_i.ready.eq(to_board.w_rdy),
                host_tx.i.payload.eq(to_board.r_data), host_tx.i.valid.eq(to_board.r_rdy),
                to_board.r_en.eq(host_tx.i.ready),
                self.top.rx.eq(host_tx.tx),
                host_rx.rx.eq(self.top.tx),
                from_board.w_data.eq(host_rx.o.payload), from_board.w_en.eq(host_rx.o.valid),
                host_rx.o.ready.eq(from_board.w_rdy),
                self.host_o.payload.eq(from_board.r_data),
                self.host_o.valid.eq(from_board.r_rdy),
                from_board.r_en.eq(self.host_o.ready),
            ]
            with m.If(host_rx.error):
                m.d.sync += self.host_error.eq(1)
            return m

    return BoardHarness

class BoardSimulation:
    """Runs a :class:`~boards.tops.BoardTop` of ``config`` in a simulator.

    Use as a context manager; :attr:`url` is the UART's address for
    ``serial.serial_for_url``. :meth:`reset` holds the board's reset for some cycles,
    :meth:`cycles` reads the simulated clock cycles since start. ``timeout_s`` bounds the
    whole simulation in wall-clock seconds.
    """

    def __init__(self, config, *, simulator=None, timeout_s=1800):
        from boards.tops import BoardTop
        self.config = config
        self.top = BoardTop(config)
        self.harness = _harness_class()(self.top)
        self._simulator = simulator
        self._timeout_s = timeout_s
        self._thread = None
        self._error = None
        self._control = None
        self.url = None

    def __enter__(self):
        import tempfile
        import threading
        from .api import run_cocotb
        ready = tempfile.NamedTemporaryFile(prefix="lowprec-board-", suffix=".json",
                                            delete=False)
        ready.close()
        os.unlink(ready.name)
        spec = {"divisor": self.config.divisor, "ready_file": ready.name,
                "wall_timeout_s": self._timeout_s}

        def run():
            try:
                run_cocotb(self.harness, "sim.board", spec, simulator=self._simulator,
                           timeout_s=self._timeout_s, context=f"board {self.config.name}")
            except BaseException as e:                           # reported on exit
                self._error = e

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 600                          # includes the build
        while not os.path.exists(ready.name):
            if not self._thread.is_alive():
                raise RuntimeError(f"Board simulation ended before it was ready: "
                                   f"{self._error}")
            if time.monotonic() > deadline:
                raise TimeoutError("Board simulation did not start within 600 s")
            time.sleep(0.05)
        time.sleep(0.05)
        with open(ready.name) as f:
            ports = json.load(f)
        os.unlink(ready.name)
        self.url = f"socket://127.0.0.1:{ports['data']}"
        self._control = socket.create_connection(("127.0.0.1", ports["control"]))
        self._control_file = self._control.makefile("rw")
        return self

    def _ask(self, request):
        self._control_file.write(json.dumps(request) + "\n")
        self._control_file.flush()
        line = self._control_file.readline()
        if not line:
            raise RuntimeError(f"Board simulation stopped: {self._error}")
        return json.loads(line)

    def reset(self, cycles=4):
        """Hold the board's reset for ``cycles`` clock cycles."""
        self._ask({"op": "reset", "cycles": int(cycles)})

    def wait(self, cycles):
        """Return once ``cycles`` more clock cycles have been simulated."""
        self._ask({"op": "wait", "cycles": int(cycles)})

    def cycles(self):
        """Clock cycles simulated so far."""
        return self._ask({"op": "cycles"})["cycles"]

    def bit_times(self):
        """Simulated time in UART bit times."""
        return self.cycles() / self.config.divisor

    def __exit__(self, *exc):
        try:
            if self._control is not None:
                try:
                    self._ask({"op": "stop"})
                except (OSError, RuntimeError):
                    pass
                self._control.close()
        finally:
            self._thread.join(timeout=120)
        if self._error is not None and exc[0] is None:
            raise self._error
        return False


# ---- Simulator side ----------------------------------------------------------------------------

class _Bridge:
    """Moves bytes between the sockets and the harness's byte streams; ``poll`` cycles between
    looks when nothing moves."""

    def __init__(self, dut, poll):
        self.dut = dut
        self.poll = poll
        self.to_board = bytearray()
        self.running = True

    def poll_data(self):
        if self.data is None:                  # the host opens the UART's URL when it likes
            try:
                self.data = self.listener.accept()[0]
            except BlockingIOError:
                return
            self.data.setblocking(False)
            self.data.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            chunk = self.data.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.running = False
        self.to_board += chunk

    async def move_bytes(self):
        """A byte each way per clock cycle while there are any; a timer wait otherwise. Inputs
        are driven at falling edges, half a cycle from the rising edges where the design
        samples them (a write in a rising edge's time step would race with the design's own
        processes there), and the handshake is read at the rising edge."""
        dut = self.dut
        dut.host_i__valid.value = 0
        dut.host_o__ready.value = 0                      # high only while bytes are read
        while self.running:
            await FallingEdge(dut.clk)
            self.poll_data()
            received = bytearray()
            moved = True
            while moved:
                sending = bool(self.to_board)
                if sending:
                    dut.host_i__payload.value = self.to_board[0]
                dut.host_i__valid.value = int(sending)
                dut.host_o__ready.value = 1
                await RisingEdge(dut.clk)
                if sending and dut.host_i__ready.value == 1:
                    del self.to_board[0]
                got = dut.host_o__valid.value == 1
                if got:
                    received.append(int(dut.host_o__payload.value))
                moved = sending or got
                await FallingEdge(dut.clk)
            dut.host_i__valid.value = 0
            dut.host_o__ready.value = 0
            if dut.host_error.value == 1:
                raise AssertionError("Board sent a character without a stop bit")
            if received:
                try:
                    self.data.sendall(bytes(received))
                except OSError:
                    self.running = False
            else:
                await _cycles(self.poll)

    async def serve_control(self):
        dut = self.dut
        buffer = b""
        while self.running:
            await _cycles(64)
            try:
                chunk = self.control.recv(4096)
            except BlockingIOError:
                continue
            if not chunk:
                self.running = False
                break
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                answer = {}
                if request["op"] == "reset":
                    await FallingEdge(dut.clk)
                    dut.board_rst.value = 1
                    await _cycles(request["cycles"])
                    dut.board_rst.value = 0
                elif request["op"] == "wait":
                    await _cycles(request["cycles"])
                elif request["op"] == "cycles":
                    from cocotb.utils import get_sim_time
                    answer["cycles"] = int(get_sim_time("ns") // _PERIOD_NS)
                elif request["op"] == "stop":
                    self.running = False
                self.control.setblocking(True)
                self.control.sendall((json.dumps(answer) + "\n").encode())
                self.control.setblocking(False)


@cocotb.test()
async def board_bridge(dut):
    """Bridge the board top's UART to a data socket until the host closes it or says stop."""
    from sim.tb_stream import _load, _write_result
    spec = _load()
    result = {"error": None}
    try:
        bridge = _Bridge(dut, spec["divisor"] * 8)
        dut.board_rst.value = 0
        dut.host_i__valid.value = 0
        dut.rst.value = 1
        cocotb.start_soon(Clock(dut.clk, _PERIOD_NS, unit="ns").start())
        await _cycles(4)
        dut.rst.value = 0

        listeners = []
        for _ in range(2):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            listeners.append(s)
        tmp = spec["ready_file"] + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"data": listeners[0].getsockname()[1],
                       "control": listeners[1].getsockname()[1]}, f)
        os.rename(tmp, spec["ready_file"])
        listeners[1].settimeout(120)
        bridge.control = listeners[1].accept()[0]
        bridge.control.setblocking(False)
        listeners[0].setblocking(False)
        bridge.listener, bridge.data = listeners[0], None

        cocotb.start_soon(bridge.move_bytes())
        deadline = time.monotonic() + spec["wall_timeout_s"]
        cocotb.start_soon(bridge.serve_control())
        while bridge.running:
            await _cycles(1024)
            if time.monotonic() > deadline:
                raise AssertionError(f"Board simulation ran past {spec['wall_timeout_s']} s")
        await _cycles(128)
        for s in (bridge.data, bridge.control, *listeners):
            if s is not None:
                s.close()
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        _write_result(result)

