import sys
from pathlib import Path

# The project is not installed as a package in the test environment: make `golden`, `hdl`,
# `sim` importable (the cocotb subprocesses inherit sys.path as their PYTHONPATH).
_root = str(Path(__file__).resolve().parent.parent)
if _root not in sys.path:
    sys.path.insert(0, _root)
