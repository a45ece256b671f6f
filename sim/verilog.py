"""Verilog generation for simulation, with a content-addressed build cache.

Identical core configurations produce identical Verilog, hence the same cache directory, so a
configuration is compiled by each simulator once, whichever pytest-xdist worker gets there first.
"""

import hashlib
import os
import re
import weakref
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring


__all__ = ["PROJECT_ROOT", "sim_build_root", "to_verilog", "build_dir_for"]


PROJECT_ROOT = Path(__file__).resolve().parent.parent

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Converting runs Yosys (about a second); a component object is converted once per name.
_verilog_cache = weakref.WeakKeyDictionary()


def sim_build_root():
    """Root of the simulation build cache: ``$LOWPREC_SIM_BUILD`` or ``<project>/sim_build``."""
    return Path(os.environ.get("LOWPREC_SIM_BUILD") or PROJECT_ROOT / "sim_build").resolve()


def to_verilog(component, name="top"):
    """Convert a component to Verilog, with one port per member of its signature.

    Parameters
    ----------
    component : :class:`amaranth.lib.wiring.Component`
        The core. Stream members become ``<stream>__valid``, ``<stream>__ready`` and
        ``<stream>__payload`` ports; a data layout member becomes one packed port. The ``sync``
        domain becomes ``clk`` and ``rst`` (active high).
    name : :class:`str`
        Name of the top-level Verilog module.

    Returns
    -------
    :class:`str`
        Verilog text. Source locations are omitted, so the text depends only on the design.
    """
    if not isinstance(component, wiring.Component):
        raise TypeError(f"Component must be an amaranth.lib.wiring.Component, not {component!r}")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"Module name must be a Verilog identifier, not {name!r}")
    try:
        per_name = _verilog_cache[component]
    except (KeyError, TypeError):
        per_name = {}
        try:
            _verilog_cache[component] = per_name
        except TypeError:  # not weak-referenceable: don't cache
            pass
    if name not in per_name:
        per_name[name] = verilog.convert(component, name=name, emit_src=False)
    return per_name[name]


def _atomic_write(path, text):
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_dir_for(verilog_text, name):
    """Cache directory for a Verilog design, keyed by a hash of its text.

    The directory ``sim_build/<name>-<hash>/`` holds ``<name>.v``; simulators build into
    subdirectories of it (see :func:`sim.runner.run_testbench`). Writing is atomic, so
    concurrent callers with the same text agree on the result.

    Parameters
    ----------
    verilog_text : :class:`str`
        The design, e.g. from :func:`to_verilog`.
    name : :class:`str`
        Top-level module name; also names the Verilog file.

    Returns
    -------
    :class:`pathlib.Path`
        The directory. The Verilog file is ``build_dir / f"{name}.v"``.
    """
    if not isinstance(verilog_text, str):
        raise TypeError(f"Verilog text must be a string, not {type(verilog_text).__name__}")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"Module name must be a Verilog identifier, not {name!r}")
    digest = hashlib.sha256(verilog_text.encode()).hexdigest()[:16]
    build_dir = sim_build_root() / f"{name}-{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    v_path = build_dir / f"{name}.v"
    if not v_path.exists() or v_path.read_text() != verilog_text:
        _atomic_write(v_path, verilog_text)
    return build_dir
