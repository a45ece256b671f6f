"""The ``lowprec`` command line: results against the golden model, and its errors."""

import numpy as np
import pytest

import golden
from lowprec.cli import main


@pytest.fixture
def tensor(tmp_path):
    x = np.random.default_rng(3).standard_normal((3, 70)).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    return x, path


def test_quantize_writes_golden_values_and_codes(tensor, tmp_path):
    x, path = tensor
    out, codes = tmp_path / "q.npy", tmp_path / "c.npz"
    assert main(["quantize", str(path), "--elem", "e3m2", "--block", "16", "--rounding",
                 "stochastic", "--seed", "9", "-o", str(out), "--codes", str(codes)]) == 0
    expected = golden.quantize_mx(x, "e3m2", 16, "stochastic", 9).astype(np.float32)
    np.testing.assert_array_equal(np.load(out), expected)
    scales, element_codes = golden.encode_mx(x, "e3m2", 16, "stochastic", 9)
    with np.load(codes) as saved:
        np.testing.assert_array_equal(saved["scales"], scales)
        np.testing.assert_array_equal(saved["codes"], element_codes)


@pytest.mark.cocotb
def test_quantize_rtl_agrees(tensor, tmp_path, capsys):
    _, path = tensor
    assert main(["quantize", str(path), "--elem", "int8", "--rtl", "--lanes", "4",
                 "-o", str(tmp_path / "q.npy")]) == 0
    assert "RTL == golden: yes" in capsys.readouterr().out


def test_verilog_writes_a_module(tmp_path):
    out = tmp_path / "core.v"
    assert main(["verilog", "mx-dequantizer", "-p", "elem=e2m1", "-p", "lanes=4",
                 "--name", "mxdq", "-o", str(out)]) == 0
    text = out.read_text()
    assert "module mxdq(" in text and "o__payload" in text


@pytest.mark.parametrize("argv,message", [
    (["quantize", "missing.npy", "-o", "q.npy"], "Input file 'missing.npy' does not exist"),
    (["verilog", "mx-multiplier", "-o", "x.v"], "Core must be one of mx-quantizer"),
    (["verilog", "mx-quantizer", "-p", "lanes", "-o", "x.v"], "--param must look like"),
    (["verilog", "mx-quantizer", "-p", "block=48", "-o", "x.v"],
     "Block size must be a power of two between 2 and 64, not 48"),
    (["verilog", "mx-quantizer", "-p", "colour=red", "-o", "x.v"], "Bad parameter"),
])
def test_errors_name_the_problem(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_quantize_rejects_bad_block(tensor, tmp_path, capsys):
    _, path = tensor
    assert main(["quantize", str(path), "--block", "48", "-o", str(tmp_path / "q.npy")]) == 2
    assert "Block size must be a power of two" in capsys.readouterr().err


def test_demo_golden_only(capsys):
    assert main(["demo", "--no-rtl"]) == 0
    out = capsys.readouterr().out
    for elem in golden.MX_ELEMENTS:
        assert f"\n{elem} " in out
    assert "Activation compression" in out and "\ne2m1 +2 outliers, rle " in out
    assert "4-bit shift MAC" in out and "\nfp16 acc, chunk 64, SR " in out


@pytest.mark.cocotb
def test_compression_demo_rtl_agrees(capsys):
    """The demo's compression table with both RTL engines on two rows: every frame's bytes and
    values agree with the golden model."""
    from lowprec.demo import run_compression_demo, sample_activations
    x = sample_activations((2, 96))
    assert run_compression_demo(x, rtl=True, rtl_rows=2) == 0
    out = capsys.readouterr().out
    assert out.count("yes") == 10 and "NO" not in out


@pytest.mark.cocotb
def test_mac_demo_rtl_agrees(capsys):
    """The demo's shift-MAC table with the RTL array: every accumulator's results agree with
    the golden model."""
    from lowprec.demo import sample_activations
    from lowprec.mac_demo import run_mac_demo
    assert run_mac_demo(sample_activations(), rtl=True, rtl_vectors=1) == 0
    out = capsys.readouterr().out
    assert out.count("yes") == 5 and "NO" not in out


def test_quantize_with_outliers_and_codebook(tensor, tmp_path):
    x, path = tensor
    out, codes = tmp_path / "q.npy", tmp_path / "c.npz"
    assert main(["quantize", str(path), "--codebook", "log3", "--outliers", "2:3:3",
                 "--block", "16", "-o", str(out), "--codes", str(codes)]) == 0
    outliers = golden.OutlierFormat(2, 3, 3)
    expected = golden.quantize_mx(x, block=16, codebook=golden.log(3), outliers=outliers)
    np.testing.assert_array_equal(np.load(out), expected.astype(np.float32))
    encoded = golden.encode_blocks(x, block=16, codebook=golden.log(3), outliers=outliers)
    with np.load(codes) as saved:
        for name in encoded._fields:
            np.testing.assert_array_equal(saved[name], getattr(encoded, name))
        np.testing.assert_array_equal(saved["levels"], golden.log(3).levels)


@pytest.mark.cocotb
def test_quantize_rtl_agrees_with_outliers(tensor, tmp_path, capsys):
    _, path = tensor
    assert main(["quantize", str(path), "--elem", "e2m1", "--outliers", "1", "--rtl",
                 "--lanes", "2", "--block", "8", "-o", str(tmp_path / "q.npy")]) == 0
    assert "RTL == golden: yes" in capsys.readouterr().out


def test_verilog_with_outliers_and_loadable_codebook(tmp_path):
    out = tmp_path / "core.v"
    assert main(["verilog", "mx-quantizer", "-p", "codebook=3", "-p", "outliers=2:4:7",
                 "-p", "block=8", "-o", str(out)]) == 0
    # rounding 2 + seed 32 + outlier count 2 + 8 levels of 9 bits
    assert "input [107:0] cfg;" in out.read_text()


@pytest.mark.parametrize("argv,message", [
    (["quantize", "x.npy", "--outliers", "2:3", "-o", "q.npy"],
     "Outliers must look like K or K:D:MO"),
    (["verilog", "mx-quantizer", "-p", "codebook=fit3", "-o", "x.v"],
     "A fitted codebook needs samples"),
    (["verilog", "mx-quantizer", "-p", "codebook=cubic3", "-o", "x.v"],
     "Codebook must look like uniformN, logN or fitN"),
    (["verilog", "mx-quantizer", "-p", "outliers=9", "-o", "x.v"],
     "Outlier count must be an integer between 0 and 4, not 9"),
])
def test_outlier_and_codebook_errors(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", np.ones((2, 8), np.float32))
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_verilog_named_cores(tmp_path):
    out = tmp_path / "core.v"
    assert main(["verilog", "outlier-merger", "-p", "outliers=1:3:3", "-p", "block=8",
                 "-o", str(out)]) == 0
    assert "module top(" in out.read_text()
    assert main(["verilog", "nonuniform-encoder", "-p", "codebook=log2", "-p", "block=4",
                 "-o", str(out)]) == 0
    assert "module top(" in out.read_text()


def test_verilog_named_core_needs_its_option(tmp_path, capsys):
    assert main(["verilog", "outlier-extractor", "-o", str(tmp_path / "x.v")]) == 2
    assert "required keyword-only argument: 'outliers'" in capsys.readouterr().err


def test_compress_decompress_round_trip(tensor, tmp_path):
    x, path = tensor
    frame, out = tmp_path / "x.bin", tmp_path / "q.npy"
    assert main(["compress", str(path), "--elem", "e2m1", "--outliers", "1:3:3",
                 "--zero-mode", "rle", "--word-bits", "64", "-o", str(frame)]) == 0
    config = golden.CompressionConfig(elem="e2m1", outliers=golden.OutlierFormat(1, 3, 3),
                                      zero_mode="rle", word_bits=64)
    assert frame.read_bytes() == golden.compress(x, config)
    assert main(["decompress", str(frame), "-o", str(out)]) == 0
    expected = golden.quantize_mx(x, "e2m1", 32, outliers=golden.OutlierFormat(1, 3, 3))
    np.testing.assert_array_equal(np.load(out), expected.astype(np.float32))


def test_decompress_reports_a_corrupt_frame(tensor, tmp_path, capsys):
    x, _ = tensor
    frame = bytearray(golden.compress(x, golden.CompressionConfig(zero_mode="zvc")))
    frame[40] ^= 0x10
    path = tmp_path / "bad.bin"
    path.write_bytes(bytes(frame))
    assert main(["decompress", str(path), "-o", str(tmp_path / "q.npy")]) == 2
    assert "CRC mismatch" in capsys.readouterr().err


def test_report_lists_formats(tensor, capsys):
    _, path = tensor
    assert main(["report", str(path), "--block", "16"]) == 0
    out = capsys.readouterr().out
    for name in golden.MX_ELEMENTS + ("e2m1 + 2 outliers", "codebook fitted N=3"):
        assert name in out


@pytest.mark.cocotb
@pytest.mark.parametrize("options", [
    ["--elem", "e4m3", "--zero-mode", "rle"],
    ["--codebook", "fit3", "--outliers", "2:3:3", "--word-bits", "64",
     "--rounding", "stochastic", "--seed", "5"],
])
def test_compress_and_decompress_rtl_agree(tmp_path, capsys, options):
    import ml_dtypes
    from lowprec.demo import sample_activations
    x = sample_activations((6, 40)).reshape(2, 3, 40).astype(ml_dtypes.bfloat16)
    np.save(tmp_path / "x.npy", x)          # saved as |V2, read back as bfloat16
    frame = tmp_path / "x.bin"
    assert main(["compress", str(tmp_path / "x.npy"), *options, "--rtl",
                 "-o", str(frame)]) == 0
    assert "RTL == golden: yes" in capsys.readouterr().out
    assert main(["decompress", str(frame), "--rtl", "--lanes", "2",
                 "-o", str(tmp_path / "q.npy")]) == 0
    assert "RTL == golden: yes" in capsys.readouterr().out
    q = np.load(tmp_path / "q.npy")
    assert q.shape == x.shape
    assert np.array_equal(q, golden.decompress(frame.read_bytes()).astype(np.float32))


def test_rtl_lanes_must_divide_the_block(tensor, tmp_path, capsys):
    assert main(["compress", str(tensor[1]), "--lanes", "3", "--rtl",
                 "-o", str(tmp_path / "x.bin")]) == 2
    assert "--lanes must be a power of two from 1 to the block size 32, not 3" in \
        capsys.readouterr().err
