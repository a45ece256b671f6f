"""``python -m formal [--long] [--list] [--workdir DIR] [--timeout S] [NAME ...]``: run the
formal proofs (all, or those whose name contains one of the NAMEs); exit status 1 when any
proof does not reach its expected verdict (negative checks must FAIL), 2 when ``yowasp-sby``
is missing."""

import argparse
import os
import sys

from .proofs import proofs
from .runner import DEFAULT_WORKDIR, SbyUnavailable, failed_properties, find_tools, run_proof


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m formal", description=__doc__.split(":")[0])
    parser.add_argument("names", nargs="*", help="run only proofs whose name contains one")
    parser.add_argument("--long", action="store_true",
                        default=os.environ.get("LOWPREC_LONG") == "1",
                        help="add the long proofs (default with LOWPREC_LONG=1)")
    parser.add_argument("--list", action="store_true", help="list the proofs and exit")
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--timeout", type=float, default=None, help="seconds per proof")
    args = parser.parse_args(argv)

    selected = [p for p in proofs(long=args.long)
                if not args.names or any(n in p.name for n in args.names)]
    if args.list:
        for p in selected:
            print(f"{p.name:32} {p.mode:5} depth {p.depth:3} expect {p.expect:4}  "
                  f"{p.description}")
        return 0
    try:
        find_tools()
    except SbyUnavailable as exc:
        print(f"formal: {exc}", file=sys.stderr)
        return 2

    bad = 0
    total = 0.0
    for p in selected:
        result = run_proof(p, args.workdir, timeout=args.timeout)
        total += result.seconds
        verdict = "ok" if result.ok else "UNEXPECTED"
        print(f"{p.name:32} {p.mode:5} depth {p.depth:3} {result.status.upper():7} "
              f"(expected {p.expect.upper()}) {result.seconds:6.1f} s  {verdict}", flush=True)
        if not result.ok:
            bad += 1
            for line in failed_properties(result.log)[:10]:
                print(f"    {line}")
            print(f"    log: {result.workdir}/logfile.txt")
    print(f"{len(selected) - bad}/{len(selected)} as expected, {total:.1f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
