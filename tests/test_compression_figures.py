"""The compression section of ``make bench`` and the presets of ``lowprec report``."""

import numpy as np
import pytest

import golden
from lowprec.compression import TARGET_OVERHEAD, compression_section, report_presets, sparsified


def test_sparsified_reaches_the_fraction_and_keeps_large_values():
    x = np.random.default_rng(0).standard_normal(4096).astype(np.float32)
    for fraction in (0.5, 0.9, 0.95):
        y = sparsified(x, fraction)
        assert np.mean(y == 0) >= fraction
        assert np.mean(y == 0) < fraction + 0.01
        kept = y != 0
        assert np.array_equal(y[kept], x[kept])
        assert np.abs(y[kept]).min() >= np.abs(x[~kept]).max()
    assert sparsified(np.zeros(8, np.float32), 0.5) is not None


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 2])
def test_sparsified_rejects_fractions_outside_0_1(fraction):
    with pytest.raises(ValueError, match=r"Zero fraction must be in \[0, 1\)"):
        sparsified(np.ones(4), fraction)


def test_presets_are_valid_configurations():
    x = np.abs(np.random.default_rng(1).standard_normal(1024)).astype(np.float32)
    labels = [label for label, _ in report_presets(x, 32)]
    assert len(labels) == len(set(labels)) == len(golden.MX_ELEMENTS) + 4
    for _, options in report_presets(x, 32):
        golden.CompressionConfig(block=32, zero_mode="zvc", **options)


def test_section_rows_match_compression_report():
    title, rows = compression_section(quick=True)
    assert "entropy bound" in title
    assert {row["mode"] for row in rows} == {"none", "zvc", "rle"}
    for row in rows:
        assert row["bits/elem"] > 0 and row["ratio vs fp32"] == pytest.approx(
            32 / row["bits/elem"], rel=0.01)
        if row["mode"] == "none":
            assert row["target"] == "-"
        else:
            assert row["target"] == ("met" if row["overhead %"] <= 100 * TARGET_OVERHEAD + 0.05
                                     else "missed")
    # zvc at 90 % zeros stores about 1 mask bit per element, so it is always above 1 bit
    assert all(row["bits/elem"] > 1 for row in rows if row["mode"] == "zvc")
