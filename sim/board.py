"""A board top in simulation, its UART bridged to TCP sockets, so the host code
(:mod:`boards.link`, :mod:`boards.host`) talks to the RTL exactly as to a board.

Python side: :class:`BoardSimulation` (a context manager) converts a :class:`boards.tops.BoardTop`
to Verilog, starts the simulator in a thread and gives the URL of the UART
(``socket://127.0.0.1:PORT``, which ``serial.serial_for_url`` opens) and a control channel
(reset the board, read the simulated time). Simulator side: the cocotb test
:func:`board_bridge`, a UART model at the top's bit rate: bytes from the data socket are sent
on ``rx`` as 8N1 characters, characters on ``tx`` are decoded and written to the socket.

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
                run_cocotb(self.top, "sim.board", spec, simulator=self._simulator,
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
    def __init__(self, dut, divisor):
        self.dut = dut
        self.divisor = divisor
        self.to_board = bytearray()
        self.running = True

    async def send_bytes(self, data):
        """Drive ``rx``: bytes waiting from the socket as 8N1 characters."""
        dut, d = self.dut, self.divisor
        await RisingEdge(dut.clk)
        await Timer(_PERIOD_NS * 250, unit="ps")               # change rx between edges
        while self.running:
            if not self.to_board:
                self.poll_data()
                if not self.to_board:
                    await _cycles(d)
                    continue
            byte = self.to_board.pop(0)
            for bit in [0] + [(byte >> n) & 1 for n in range(8)] + [1]:
                dut.rx.value = bit
                await _cycles(d)

    def poll_data(self):
        try:
            chunk = self.data.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.running = False
        self.to_board += chunk

    async def receive_bytes(self):
        """Decode ``tx`` and pass the characters on to the socket."""
        dut, d = self.dut, self.divisor
        while self.running:
            await FallingEdge(dut.tx)
            # Sample in the middle of each bit, a quarter period away from any clock edge.
            await Timer(d * _PERIOD_NS * 500 + _PERIOD_NS * 250, unit="ps")
            if dut.tx.value != 0:
                continue                                        # a glitch, not a start bit
            byte = 0
            for n in range(8):
                await _cycles(d)
                byte |= int(dut.tx.value) << n
            await _cycles(d)
            if dut.tx.value != 1:
                raise AssertionError("Board sent a character without a stop bit")
            try:
                self.data.sendall(bytes([byte]))
            except OSError:
                self.running = False

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
                    dut.rst.value = 1
                    await _cycles(request["cycles"])
                    dut.rst.value = 0
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
        bridge = _Bridge(dut, spec["divisor"])
        dut.rx.value = 1
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
        for s in listeners:
            s.settimeout(120)
        bridge.control = listeners[1].accept()[0]
        bridge.data = _accept_data(listeners[0])
        for s in (bridge.data, bridge.control):
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        cocotb.start_soon(bridge.send_bytes(None))
        cocotb.start_soon(bridge.receive_bytes())
        deadline = time.monotonic() + spec["wall_timeout_s"]
        control = cocotb.start_soon(bridge.serve_control())
        while bridge.running:
            await _cycles(1024)
            if time.monotonic() > deadline:
                raise AssertionError(f"Board simulation ran past {spec['wall_timeout_s']} s")
        await _cycles(128)
        for s in (bridge.data, bridge.control):
            s.close()
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        _write_result(result)


def _accept_data(listener):
    """The data connection: the host opens the UART's URL once it has the control channel."""
    return listener.accept()[0]
