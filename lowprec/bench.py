"""``lowprec bench``: synthesis/place-and-route figures of the registered cores, and more.

A bench is an entry in :data:`BENCHES`: a name, a factory returning a fresh
``wiring.Component``, and a dict of the parameters to print. :func:`register` adds one::

    from lowprec.bench import register
    register("mx-quantizer", lambda: MXQuantizer(fmt="e4m3", block=32),
             {"fmt": "e4m3", "block": 32}, elements_per_cycle=32)

:func:`run_benches` builds every selected entry for every selected device with
:func:`boards.synth.synthesize` (two builds at a time by default), prints one table and returns
its rows as dicts. LUT/FF/BRAM/DSP are the core's own cells; the benchmark wrapper that feeds
and observes the core's ports is reported apart (``wrap LUT/FF``), see ``boards/synth.py``.
``elem/s`` is Fmax times the entry's ``elements_per_cycle``, when it gives one.

Tables derived from the synthesis rows (e.g. one core against its baseline) come from
:data:`SYNTH_SUMMARIES`: callables ``summary(rows) -> (title, rows)`` (or ``None`` when the run
has no rows they use), printed right after the synthesis table whenever it is built.

Other tables (golden-model speed, simulator speed) come from :data:`EXTRA_SECTIONS`: callables
``section(*, quick) -> (title, rows)``, ``rows`` a list of dicts whose keys are the columns.
They run after the synthesis table when asked for (``sections=True``, the command-line default);
their rows are returned too, each tagged with ``"section": title``.
"""

import argparse
import json
import math
import re
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["Bench", "BENCHES", "EXTRA_SECTIONS", "SYNTH_SUMMARIES", "register", "run_benches",
           "run_sections", "run_summaries", "format_table", "write_json", "main"]

DEVICES = ("ice40up5k", "ecp5-85f")
SYNTH_SECTION = "synthesis"


@dataclass
class Bench:
    """One registered core configuration.

    ``factory()`` returns a new component each time it is called (one per build). ``params`` is
    printed as ``k=v`` pairs. ``elements_per_cycle``: elements the core accepts per clock at full
    throughput, for the ``elem/s`` column. ``devices``: the devices it is built for (default:
    all). ``target_mhz``: a clock target, either one number or a dict per device (default:
    the device's). ``quick``: whether ``--quick`` keeps it. ``dsp``: whether Yosys may infer
    DSP blocks (``False``: fabric only, see :func:`boards.synth.synthesize`).
    """

    name: str
    factory: Callable
    params: dict = field(default_factory=dict)
    elements_per_cycle: float | None = None
    devices: tuple | None = None
    target_mhz: float | dict | None = None
    quick: bool = True
    dsp: bool = True

    def target_for(self, device):
        if isinstance(self.target_mhz, dict):
            return self.target_mhz.get(device)
        return self.target_mhz


#: The registered benches, in table order. Entries may also be plain
#: ``(name, factory, params[, elements_per_cycle])`` tuples.
BENCHES: list = []

#: Callables ``section(*, quick: bool) -> (title, rows)`` producing extra tables.
EXTRA_SECTIONS: list = []

#: Callables ``summary(synth_rows) -> (title, rows) or None`` deriving tables from the
#: synthesis rows of the same run (printed after the synthesis table).
SYNTH_SUMMARIES: list = []


def register(name, factory, params=None, *, elements_per_cycle=None, devices=None,
             target_mhz=None, quick=True, dsp=True):
    """Add a bench to :data:`BENCHES` and return it. Names must be unique."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"Bench name must be a non-empty string, not {name!r}")
    if not callable(factory):
        raise TypeError(f"Bench factory must be callable, not {factory!r}")
    if any(_as_bench(b).name == name for b in BENCHES):
        raise ValueError(f"Bench {name!r} is already registered")
    for device in devices or ():
        if device not in DEVICES:
            raise ValueError(f"Device must be one of {', '.join(map(repr, DEVICES))}, "
                             f"not {device!r}")
    if not isinstance(dsp, bool):
        raise TypeError(f"DSP must be a bool, not {dsp!r}")
    bench = Bench(name, factory, dict(params or {}), elements_per_cycle,
                  tuple(devices) if devices else None, target_mhz, quick, dsp)
    BENCHES.append(bench)
    return bench


def _as_bench(entry):
    if isinstance(entry, Bench):
        return entry
    if isinstance(entry, tuple) and 2 <= len(entry) <= 4:
        return Bench(*entry)
    raise TypeError(f"Bench entry must be a Bench or a (name, factory, params"
                    f"[, elements_per_cycle]) tuple, not {entry!r}")


# --- tables ---------------------------------------------------------------------------------


def _si(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {suffix}"
    return f"{value:.3g}"


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else _si(value)
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def format_table(columns, rows):
    """Plain-text table: ``columns`` is a list of (header, key or callable(row))."""
    cells = [[h for h, _ in columns]]
    for row in rows:
        cells.append([str(get(row)) if callable(get) else _cell(row.get(get))
                      for _, get in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _synth_columns():
    def fmax(row):
        return "-" if row.get("fmax_mhz") is None else f"{row['fmax_mhz']:.1f}"

    def met(row):
        if row.get("error"):
            return "NO FIT" if row.get("no_fit") else "FAILED"
        return "yes" if row.get("timing_met") else "NO"

    def wrap(row):
        if row.get("wrapper_luts") is None:
            return "-"
        return f"{row['wrapper_luts']}/{row['wrapper_ffs']}"

    return [
        ("name", "name"), ("params", "params"), ("device", "device"),
        ("LUT", "luts"), ("FF", "ffs"), ("BRAM", "brams"),
        ("DSP", lambda r: _cell(r.get("dsps")) + ("" if r.get("dsp", True) else " (off)")),
        ("Fmax MHz", fmax), ("target", lambda r: f"{r['target_mhz']:g}"), ("met", met),
        ("elem/s", lambda r: _si(r.get("elements_per_s"))),
        ("wrap LUT/FF", wrap), ("build s", "seconds"),
    ]


def _generic_columns(rows):
    keys = []
    for row in rows:
        for key in row:
            if key != "section" and key not in keys:
                keys.append(key)
    return [(key, key) for key in keys]


# --- running --------------------------------------------------------------------------------


_registered = False


def _register_project_benches():
    """Register the project's cores and extra sections, once."""
    global _registered
    if not _registered:
        _registered = True
        from . import bench_mx, bench_mac
        bench_mx.register_all()
        bench_mac.register_all()


def _selected(filter, quick):
    out = []
    for entry in BENCHES:
        bench = _as_bench(entry)
        if filter and filter.lower() not in bench.name.lower():
            continue
        if quick and not bench.quick:
            continue
        out.append(bench)
    return out


def _build_row(bench, device, seed, build_root):
    from boards.synth import DEVICES as SYNTH_DEVICES, synthesize

    row = {
        "section": SYNTH_SECTION, "name": bench.name, "params": dict(bench.params),
        "device": device,
        "target_mhz": bench.target_for(device) or SYNTH_DEVICES[device].default_mhz,
        "elements_per_cycle": bench.elements_per_cycle, "dsp": bench.dsp,
    }
    start = time.monotonic()
    try:
        build_dir = None
        if build_root is not None:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in bench.name)
            build_dir = f"{build_root}/{safe}-{device}"
        kwargs = {} if bench.dsp else {"dsp": False}
        result = synthesize(bench.factory(), device=device, target_mhz=row["target_mhz"],
                            seed=seed, build_dir=build_dir, **kwargs)
    except Exception as e:  # one failed build must not lose the others' figures
        row.update(error=f"{type(e).__name__}: {e}", seconds=round(time.monotonic() - start, 1))
        row["no_fit"] = _is_no_fit(row["error"])
        return row
    data = result.as_dict()
    data.pop("device")
    data.pop("target_mhz")
    row.update(data)
    row["elements_per_s"] = (result.fmax_mhz * 1e6 * bench.elements_per_cycle
                             if bench.elements_per_cycle else None)
    return row


_NO_FIT = re.compile(r"(?i)(only has \d+|too many|does not fit|not enough|unable to place|"
                     r"no bels remaining|failed to place|exceeds the device)")


def _is_no_fit(error):
    """Whether a failed build's message says the design is larger than the device."""
    return bool(_NO_FIT.search(error or ""))


def run_summaries(synth_rows, *, out=None):
    """Run :data:`SYNTH_SUMMARIES` on the synthesis rows, print their tables, return their
    rows (tagged with ``"section": title``). Summaries returning ``None`` print nothing."""
    out = sys.stdout if out is None else out
    rows = []
    for summary in SYNTH_SUMMARIES:
        name = getattr(summary, "__name__", repr(summary))
        try:
            result = summary(synth_rows)
        except Exception:
            print(f"\n## {name}: FAILED\n{traceback.format_exc()}", file=out)
            rows.append({"section": name, "error": traceback.format_exc(limit=3)})
            continue
        if result is None:
            continue
        rows.extend(_print_section(*result, out))
    return rows


def _print_section(title, section_rows, out):
    """Print one extra table; return its rows tagged with ``section``."""
    section_rows = [dict(r, section=title) for r in section_rows]
    print(f"\n## {title}\n", file=out)
    print(format_table(_generic_columns(section_rows), section_rows) if section_rows
          else "(no rows)", file=out)
    return section_rows


def run_sections(*, quick=False, out=None):
    """Run :data:`EXTRA_SECTIONS`, print their tables, return their rows (tagged)."""
    out = sys.stdout if out is None else out
    rows = []
    for section in EXTRA_SECTIONS:
        name = getattr(section, "__name__", repr(section))
        try:
            title, section_rows = section(quick=quick)
        except Exception:
            print(f"\n## {name}: FAILED\n{traceback.format_exc()}", file=out)
            rows.append({"section": name, "error": traceback.format_exc(limit=3)})
            continue
        rows.extend(_print_section(title, section_rows, out))
    return rows


def run_benches(filter=None, devices=DEVICES, jobs=2, *, quick=False, sections=False,
                seed=1, build_root=None, out=None):
    """Build the selected benches for ``devices``, print the table, return the rows.

    ``filter``: keep benches whose name contains this (case-insensitive). ``jobs``: builds run
    at once (each build is a Yosys or nextpnr process). ``quick``: skip benches registered with
    ``quick=False`` and ask the extra sections for short runs. ``sections``: also run
    :data:`EXTRA_SECTIONS` after the synthesis table. ``build_root``: keep each build in
    ``<build_root>/<name>-<device>``. Failed builds give a row with an ``error`` entry.
    """
    out = sys.stdout if out is None else out
    _register_project_benches()
    for device in devices:
        if device not in DEVICES:
            raise ValueError(f"Device must be one of {', '.join(map(repr, DEVICES))}, "
                             f"not {device!r}")
    tasks = [(bench, device) for bench in _selected(filter, quick) for device in devices
             if bench.devices is None or device in bench.devices]

    print(f"## Synthesis and place-and-route ({len(tasks)} builds, {max(1, jobs)} at a time)",
          file=out)
    rows = []
    if tasks:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [pool.submit(_build_row, bench, device, seed, build_root)
                       for bench, device in tasks]
            for index, future in enumerate(futures):
                row = future.result()
                status = "FAILED" if row.get("error") else f"{row['seconds']} s"
                print(f"  [{index + 1}/{len(tasks)}] {row['name']} {row['device']}: {status}",
                      file=sys.stderr)
                rows.append(row)
        print(file=out)
        print(format_table(_synth_columns(), rows), file=out)
        print("\nLUT/FF/BRAM/DSP: the core alone; wrap LUT/FF: the benchmark wrapper around "
              "it (input shift register, output capture and XOR fold).", file=out)
        for row in rows:
            if row.get("error"):
                what = "does not fit" if row.get("no_fit") else "failed"
                print(f"\n{row['name']} {row['device']} {what}:\n{row['error']}", file=out)
            elif row.get("wrapper_limited"):
                print(f"\nnote: {row['name']} {row['device']}: the critical path lies in the "
                      f"wrapper ({row['critical_path']}); the core's own Fmax is higher.",
                      file=out)
        rows.extend(run_summaries(list(rows), out=out))
    else:
        print("(no benches selected" + ("" if BENCHES else "; none are registered") + ")",
              file=out)
    if sections:
        rows.extend(run_sections(quick=quick, out=out))
    return rows


def write_json(rows, path):
    """Write rows (from :func:`run_benches`) as a JSON document with some context."""
    import platform as host

    document = {
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {"python": sys.version.split()[0], "machine": host.machine()},
        "rows": rows,
    }
    with open(path, "w") as f:
        json.dump(document, f, indent=2, default=str)
        f.write("\n")


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="lowprec bench",
        description="Synthesize, place and route every registered core for the iCE40UP5K and "
                    "the ECP5-85F (Yosys and nextpnr from YoWASP; no bitstream is written) and "
                    "print resources and Fmax, then the extra tables (golden-model and "
                    "simulator speed). LUT/FF/BRAM/DSP are the core's own cells; the wrapper "
                    "that drives and observes its ports is listed apart.",
        epilog="example: lowprec bench --device ecp5-85f --filter quant --json bench.json")
    parser.add_argument("--json", metavar="FILE",
                        help="also write every row (all figures, raw cell counts) to FILE")
    parser.add_argument("--filter", metavar="SUBSTR",
                        help="only benches whose name contains SUBSTR (case-insensitive)")
    parser.add_argument("--device", action="append", choices=DEVICES, metavar="DEVICE",
                        help=f"build for this device only; repeatable; one of {', '.join(DEVICES)}"
                             " (default: both)")
    parser.add_argument("--quick", action="store_true",
                        help="skip benches marked slow and make the extra tables short")
    parser.add_argument("--jobs", "-j", type=int, default=2, metavar="N",
                        help="builds to run at once (default: 2)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default: 1)")
    parser.add_argument("--no-sections", dest="sections", action="store_false",
                        help="only the synthesis table")
    parser.add_argument("--keep", metavar="DIR",
                        help="keep each build's files (logs, netlists) under DIR")
    args = parser.parse_args(argv)

    rows = run_benches(args.filter, tuple(args.device or DEVICES), args.jobs, quick=args.quick,
                       sections=args.sections, seed=args.seed, build_root=args.keep)
    if args.json:
        write_json(rows, args.json)
        print(f"\nwrote {args.json}")
    return 1 if any(row.get("error") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
