"""cocotb simulation harness: Verilog generation, the runner, stream drivers and the Python API.

Names are imported lazily, so that the cocotb testbenches (which import :mod:`sim.streams` inside
the simulator) do not pay for importing Amaranth and NumPy.
"""

import importlib


_EXPORTS = {
    "to_verilog": "verilog", "build_dir_for": "verilog",
    "run_testbench": "runner", "check_simulator": "runner", "SimulationFailed": "runner",
    "SimulatorUnavailable": "runner",
    "run_stream": "api", "StreamResult": "api", "payload_shape": "api",
    "pack": "api", "unpack": "api", "pack_beats": "api", "unpack_beats": "api",
}

__all__ = list(_EXPORTS)


def __getattr__(name):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'sim' has no attribute {name!r}") from None
    return getattr(importlib.import_module(f".{module}", __name__), name)
