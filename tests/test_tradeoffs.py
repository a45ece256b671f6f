"""``lowprec.tradeoffs``: bit accounting, determinism, and a quick run."""

import time

import numpy as np
import pytest

import golden
from golden import OutlierFormat
from lowprec import tradeoffs
from lowprec.demo import quantization_stats


def test_bits_per_element_closed_forms():
    # MX: 8 scale bits shared by 32 elements
    assert tradeoffs.bits_per_element(4, 32) == 4 + 8 / 32
    assert tradeoffs.bits_per_element(8, 32, OutlierFormat(0)) == 8.25
    # e2m1, 1 record of index 5 + code 1+4+7 bits, count field 1 bit: (8 + 128 + 17 + 1) / 32
    assert tradeoffs.bits_per_element(4, 32, OutlierFormat(1, 4, 7)) == 154 / 32
    # e3m2, 4 records of 5 + 7 bits, count 0..4 in 3 bits: (8 + 192 + 48 + 3) / 32
    assert tradeoffs.bits_per_element(6, 32, OutlierFormat(4, 3, 3)) == 251 / 32
    # block 16: index 4 bits; 3 records of 4 + 12, count 2 bits: (8 + 64 + 48 + 2) / 16
    assert tradeoffs.bits_per_element(4, 16, OutlierFormat(3, 4, 7)) == 122 / 16


def test_bits_match_the_hardware_block_layout():
    from hdl.mx_layouts import mx_block_layout
    for elem, outliers in (("e2m1", OutlierFormat(1, 4, 7)), ("e4m3", OutlierFormat(4, 3, 3)),
                           ("int4", None)):
        layout = mx_block_layout(elem, 32, outliers=outliers)
        payload = layout.size - 1                       # without the `last` flag
        bits = tradeoffs.bits_per_element(golden.resolve_format(elem).bits, 32, outliers)
        assert payload == bits * 32


def test_rows_account_bits_and_cover_the_configurations():
    x = tradeoffs.student_t_sample((4, 128), seed=5)
    rows = tradeoffs.error_table(x, holdout=tradeoffs.student_t_sample((4, 128), seed=6))
    configs = tradeoffs.configurations()
    assert [r["name"] for r in rows] == [c.name for c in configs]
    by_name = {r["name"]: r for r in rows}
    assert by_name["e2m1"]["bits/elem"] == 4.25
    assert by_name["e3m2 + 2 x e4m7"]["bits/elem"] == (8 + 192 + 2 * 17 + 2) / 32
    assert by_name["fitted (held out) N=4 + 2 x e3m3"]["bits/elem"] == \
        (8 + 32 * 5 + 2 * 12 + 2) / 32
    assert by_name["log N=2"]["bits/elem"] == 3.25
    assert {r["K"] for r in rows} == {0, 1, 2, 3, 4}
    # a row's figures are those of golden.quantize_mx with that configuration
    q = golden.quantize_mx(x, "int4", 32, outliers=OutlierFormat(3, 3, 3))
    rmse, sqnr = quantization_stats(x, q)
    assert by_name["int4 + 3 x e3m3"]["RMSE"] == rmse
    assert by_name["int4 + 3 x e3m3"]["SQNR dB"] == sqnr
    # uniform levels k/4 (N = 3) are the magnitudes of int4
    assert by_name["uniform N=3"]["RMSE"] == pytest.approx(by_name["int4"]["RMSE"], rel=1e-9)


def test_rows_are_deterministic():
    x = tradeoffs.student_t_sample((2, 256), seed=9)
    assert tradeoffs.error_table(x) == tradeoffs.error_table(x.copy())
    assert tradeoffs.section(quick=True) == tradeoffs.section(quick=True)


def test_cross_fitting_without_holdout_uses_the_other_half():
    x = tradeoffs.student_t_sample((2, 64), seed=1)      # 4 blocks
    rows = {r["name"]: r for r in tradeoffs.error_table(x)}
    blocks = x.reshape(-1, 32)
    first = golden.fit_codebook(blocks[2:], 3)
    second = golden.fit_codebook(blocks[:2], 3)
    q = np.concatenate([golden.quantize_mx(blocks[:2], codebook=first),
                        golden.quantize_mx(blocks[2:], codebook=second)]).reshape(x.shape)
    assert rows["fitted (held out) N=3"]["RMSE"] == quantization_stats(x, q)[0]


def test_padded_last_axis():
    x = tradeoffs.student_t_sample((3, 40), seed=2)
    rows = tradeoffs.error_table(x, block=16)
    assert all(np.isfinite(r["RMSE"]) for r in rows)
    assert rows[0]["bits/elem"] == 4.5


def test_table_runs_quickly_and_renders():
    start = time.perf_counter()
    title, rows = tradeoffs.section(quick=True)
    assert time.perf_counter() - start < 10
    assert len(rows) == len(tradeoffs.configurations())
    assert {"name", "bits/elem", "act SQNR dB", "t3 RMSE", "act front"} <= set(rows[0])
    assert any(r["act front"] for r in rows)
    text = tradeoffs.markdown_table(rows[:3], ["name", "bits/elem", "act SQNR dB"])
    lines = text.splitlines()
    assert lines[0] == "| name | bits/elem | act SQNR dB |"
    assert lines[1] == "|---|---:|---:|"
    assert lines[2].startswith("| e2m1 | 4.25 | ")
    assert len(lines) == 5


def test_pareto_front():
    rows = [{"bits/elem": 4, "SQNR dB": 10.0}, {"bits/elem": 5, "SQNR dB": 9.0},
            {"bits/elem": 5, "SQNR dB": 12.0}, {"bits/elem": 4, "SQNR dB": 10.0}]
    assert tradeoffs.pareto_front(rows) == [0, 2, 3]
