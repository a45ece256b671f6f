"""The boards' real bitstreams (YoWASP), one per FPGA family, with timing checked: the
iCEBreaker top through ``lowprec build`` and the ULX3S-85F top through build_bitstream."""

import json

import pytest

from boards.build import BOARDS, build_bitstream
from boards.tops import TOPS, BoardTop


@pytest.mark.slow
def test_icebreaker_bitstream_with_lowprec_build(tmp_path, capsys):
    from lowprec.cli import main
    code = main(["build", "--board", "icebreaker", "--build-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "PASS" in out and "ICESTORM_LC" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["timing_met"] and report["fmax_mhz"] >= 12
    assert (tmp_path / "top.bin").stat().st_size > 100_000


@pytest.mark.slow
def test_ulx3s_bitstream(tmp_path):
    report = build_bitstream(BoardTop(TOPS["ulx3s-85f"]), "ulx3s-85f", build_dir=tmp_path)
    print(report.format())
    assert report.timing_met and report.fmax_mhz >= BOARDS["ulx3s-85f"].sys_hz / 1e6
    assert report.utilisation["EHXPLLL"]["used"] == 1
    assert (tmp_path / "top.bit").stat().st_size > 100_000          # 590 kB seen
