"""Board tops end to end: the host library (boards/link.py, boards/host.py) talks over a TCP
socket to the whole top in a simulator, its UART included (sim/board.py), and every result is
compared with the golden model; then the link is abused (bad CRC, garbage, abandoned frames,
a reset in the middle of a frame) and must keep answering.

The iCEBreaker top runs in Icarus at its real bit rate (4 cycles per bit). The ECP5 top
(two engines and a MAC array, about 15k LUTs) runs in Verilator at 4 cycles per bit:
Icarus simulates it at about 5k cycles a second, too slow for a tensor of thousands of
elements in CI.
"""

import numpy as np
import pytest

import golden
from boards.host import BoardClient, BoardMismatch, ResultMismatch
from boards.link import Link, LinkNAK, open_serial
from boards.protocol import (Command, FrameDecoder, Status, encode_frame, encode_info,
                             encode_status, encode_write)
from boards.tops import TOPS
from sim.board import BoardSimulation
from sim.mac import mac_expected
from sim.stimulus import float_blocks


ICEBREAKER = TOPS["icebreaker"]
ULX3S = TOPS["ulx3s-85f"].replace(baud=TOPS["ulx3s-85f"].clock_hz // 4)


def connect(sim, config):
    serial = open_serial(sim.url, config.baud, timeout=120)
    return serial, BoardClient(Link(serial, timeout=120, baud=config.baud), config)


def raw_exchange(serial, data):
    """Send raw bytes; return the next response frame."""
    serial.write(data)
    decoder = FrameDecoder()
    while True:
        chunk = serial.read(decoder.wanted())
        assert chunk, "no response"
        frames = decoder.feed(chunk)
        if frames:
            return frames[0]


def mac_codes(rng, T, P, n):
    """Random INT4/FP4 codes with the extremes in every dot product."""
    a = rng.integers(-8, 8, (T, P, n))
    g = rng.integers(0, 16, (T, n))
    a[:, :, 0], g[:, 0] = -8, 7                 # the largest product magnitude
    a[:, :, 1], g[:, 1] = 7, 15
    g[:, 2] = 8                                 # -0
    return a, g


def abuse_link(sim, serial, client):
    """Bad CRC, unknown command, overlong request, garbage, an abandoned frame and a reset in
    the middle of a frame; the board must answer correctly after each."""
    config = client.config
    idle_cycles = config.idle_timeout_bits * config.divisor
    before = client.status()

    bad = bytearray(encode_status())
    bad[-2] ^= 0x01
    assert raw_exchange(serial, bytes(bad)).code == Status.BAD_CRC
    assert raw_exchange(serial, encode_frame(0x33)).code == Status.UNKNOWN_COMMAND
    overlong = encode_frame(Command.WRITE, bytes(config.max_payload + 1))
    assert raw_exchange(serial, overlong).code == Status.TOO_LONG

    garbage = bytes(b for b in np.random.default_rng(5).integers(0, 256, 40).tolist()
                    if b != 0x5A)
    serial.write(garbage)
    assert client.link.info().build_id == config.build_id

    abandoned = garbage[:3] + encode_write(0, bytes(8))[:7]        # stops mid-frame
    serial.write(abandoned)
    sim.wait(10 * config.divisor * (len(abandoned) + 2) + idle_cycles)  # on the wire, then idle
    after = client.status()
    assert after["bad_crc"] == before["bad_crc"] + 1
    assert after["unknown_command"] == before["unknown_command"] + 1
    assert after["too_long"] == before["too_long"] + 1
    assert after["garbage"] == before["garbage"] + len(garbage) + 3
    assert after["timeouts"] == before["timeouts"] + 1
    assert after["rx_errors"] == before["rx_errors"]

    # Reset while a frame is half in: the board starts afresh, counters at zero.
    serial.write(encode_info()[:3])
    sim.wait(5 * 10 * config.divisor)          # the three bytes are in, the frame is not
    sim.reset(10)
    status = client.status()
    assert {k: status[k] for k in ("bad_crc", "garbage", "timeouts", "too_long")} == \
        {"bad_crc": 0, "garbage": 0, "timeouts": 0, "too_long": 0}
    assert status["ok"] == 0                     # this STATUS is counted after its answer
    return status


def test_icebreaker_top():
    rng = np.random.default_rng(1)
    with BoardSimulation(ICEBREAKER) as sim:
        serial, client = connect(sim, ICEBREAKER)
        assert client.info.build_id == ICEBREAKER.build_id
        assert client.top.compress is None and client.top.decompress is None
        with pytest.raises(BoardMismatch, match="Board runs build [0-9a-f]{8}, not "):
            BoardClient(client.link, ICEBREAKER.replace(fifo_depth=256))

        # 4096 products in 16 dot products of 256; then stochastic rounding, odd phase.
        a, g = mac_codes(rng, 16, 1, 256)
        values = client.mac(a, g)
        frame = {"a": a, "g": g}
        assert np.array_equal(values, mac_expected(frame, client.top.mac)["values"])
        a, g = mac_codes(rng, 70, 1, 12)          # more rows than the array's memory (64)
        values = client.mac(a, g, rounding="stochastic", phase=1, seed=0xC0FFEE)
        frame = {"a": a, "g": g, "rounding": "stochastic", "phase": 1, "seed": 0xC0FFEE}
        assert np.array_equal(values, mac_expected(frame, client.top.mac)["values"])

        # The check can fail: a board result compared with another frame's golden values.
        with pytest.raises(ResultMismatch, match="differ from the golden model's"):
            _check_against_wrong_phase(client, a[:4], g[:4])

        with pytest.raises(ValueError, match="Top 'icebreaker' has no compress core"):
            client.compress(np.zeros((2, 32), np.float32), golden.CompressionConfig())

        status = abuse_link(sim, serial, client)
        assert status["mac_rows"] == 0
        a, g = mac_codes(rng, 4, 1, 64)            # and it still computes
        client.mac(a, g)
        assert client.status()["mac_rows"] == 4
        serial.close()


def _check_against_wrong_phase(client, a, g):
    """Run ``a, g`` on the board but check the result against the golden values of the other
    phase (every FP4 level halved or doubled): the check must notice."""
    import sim.mac as simmac
    real = simmac.mac_expected
    try:
        simmac.mac_expected = lambda frame, core: real({**frame, "phase": 1 - frame["phase"]},
                                                       core)
        client.mac(a, g)
    finally:
        simmac.mac_expected = real


def _activations(rng, shape):
    x = float_blocks(int(np.prod(shape)) // 32, 32, "bf16", "e4m3", rng).reshape(shape)
    return x.astype(np.float32)


def test_ulx3s_top():
    rng = np.random.default_rng(2)
    with BoardSimulation(ULX3S, simulator="verilator") as sim:
        serial, client = connect(sim, ULX3S)
        assert client.info.clock_hz == 45_000_000

        # 4096 elements of edge-case blocks; and rows that are not whole blocks.
        x1 = _activations(rng, (8, 512))
        x2 = _activations(rng, (5, 128))[:, :100]
        c1 = golden.CompressionConfig(elem="e4m3", zero_mode="zvc")
        c2 = golden.CompressionConfig(elem="e2m1", rounding="stochastic", seed=99,
                                      zero_mode="rle")
        frames = [client.compress(x1, c1), client.compress(x2, c2)]
        assert client.status()["compress_cfg_errors"] == 0
        for frame, x in zip(frames, (x1, x2)):
            result = client.decompress(frame)            # every element checked inside
            assert result.code == "OK" and result.shape == x.shape
        broken = bytearray(frames[0])
        broken[-1] ^= 0x10                                  # in the CRC trailer
        assert client.decompress(bytes(broken)).code == "CRC_MISMATCH"

        a, g = mac_codes(rng, 8, 4, 128)
        values = client.mac(a, g, rounding="nearest_even")
        assert np.array_equal(values, mac_expected({"a": a, "g": g}, client.top.mac)["values"])

        abuse_link(sim, serial, client)
        assert client.compress(x2, c2) == frames[1]      # and it still compresses
        serial.close()


# ---- the command line, --sim -------------------------------------------------------------------

def run_cli(capsys, *argv):
    from lowprec.cli import main
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_board_run_mac_sim(tmp_path, capsys):
    rng = np.random.default_rng(3)
    a, g = mac_codes(rng, 6, 1, 40)
    np.savez(tmp_path / "in.npz", a=a, g=g)
    code, out, err = run_cli(capsys, "board", "run", "--board", "icebreaker", "--sim",
                             str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npy"),
                             "--config", "rounding=stochastic,seed=11,phase=1")
    assert code == 0, err
    assert "golden check: identical" in out and "elements/s at the board's 3,000,000 baud" in out
    frame = {"a": a, "g": g, "rounding": "stochastic", "seed": 11, "phase": 1}
    from boards.tops import BoardTop
    expected = mac_expected(frame, BoardTop(ICEBREAKER).mac)["values"]
    assert np.array_equal(np.load(tmp_path / "out.npy"), expected)


def test_cli_board_run_compress_and_decompress_sim(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LOWPREC_SIM", "verilator")
    x = _activations(np.random.default_rng(4), (3, 96))
    np.save(tmp_path / "x.npy", x)
    common = ["--board", "ulx3s-85f", "--sim", "--sim-divisor", "4"]
    code, out, err = run_cli(capsys, "board", "run", *common, str(tmp_path / "x.npy"),
                             "-o", str(tmp_path / "x.bin"), "--config",
                             "elem=e2m1,zero_mode=rle,rounding=stochastic,seed=3")
    assert code == 0, err
    config = golden.CompressionConfig(elem="e2m1", zero_mode="rle", rounding="stochastic",
                                      seed=3)
    from sim.stimulus import cast_to
    frame = golden.compress(cast_to(x, "bf16").astype(np.float64), config)
    assert (tmp_path / "x.bin").read_bytes() == frame
    code, out, err = run_cli(capsys, "board", "run", *common, str(tmp_path / "x.bin"),
                             "-o", str(tmp_path / "y.npy"))
    assert code == 0, err
    expected = cast_to(golden.decompress(frame), "bf16").astype(np.float32)
    assert np.array_equal(np.load(tmp_path / "y.npy"), expected, equal_nan=True)


def test_cli_board_info_sim(capsys):
    code, out, err = run_cli(capsys, "board", "info", "--board", "icebreaker", "--sim")
    assert code == 0, err
    assert f"build {ICEBREAKER.build_id:08x} (matches)" in out
    assert "port mac_in" in out and "mac_rows" in out


@pytest.mark.parametrize("argv, message", [
    (["board", "run", "--board", "icebreaker", "IN.npz", "-o", "o"],
     "Input file 'IN.npz' does not exist"),
    (["board", "info", "--board", "icebreaker"], r"Give --port \(the board's serial device\) "
                                                 r"or --sim"),
    (["board", "run", "--board", "icebreaker", "--sim", "x.txt", "-o", "o"],
     "Cannot tell the operation from 'x.txt'"),
    (["board", "run", "--board", "icebreaker", "--sim", "x.npz", "-o", "o", "--config",
      "elem=e4m3"], "--config for mac takes KEY=VALUE items with keys rounding, phase, seed, "
                    "not 'elem=e4m3'"),
    (["board", "run", "--board", "icebreaker", "--sim", "x.npz", "-o", "o", "--config",
      "seed=x"], "--config seed must be an integer, not 'x'"),
    (["board", "info", "--board", "icebreaker", "--sim", "--sim-divisor", "3"],
     "--sim-divisor must be at least 4, not 3"),
])
def test_cli_board_errors(argv, message, capsys):
    import re
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and re.search(message, err), err
