"""Host operations on a board top: compress, decompress and multiply-accumulate tensors through
the link (:mod:`boards.link`), each result checked against the golden model on request.

:class:`BoardClient` knows a top's ports from its :class:`~boards.tops.TopConfig` (the same
Python object the bitstream was built from) and refuses a board whose ``INFO`` block says
otherwise. Records are packed with the cores' own ``lib.data`` layouts, through the helpers the
simulation testbenches use (:mod:`sim.compress`, :mod:`sim.decompress`, :mod:`sim.mac`).
"""

import dataclasses

import numpy as np


__all__ = ["BoardClient", "BoardMismatch", "ResultMismatch", "DecompressResult"]


class BoardMismatch(RuntimeError):
    """The board's ``INFO`` block does not describe the expected top."""


class ResultMismatch(AssertionError):
    """A board's result differs from the golden model's."""


@dataclasses.dataclass
class DecompressResult:
    """``code`` (:class:`hdl.unzero.DecodeError` name), ``offset`` (word), ``shape`` and
    ``values`` (float32, ``None`` unless ``code`` is ``OK``)."""
    code: str
    offset: int
    shape: tuple
    values: np.ndarray = None


def _records(values, record_bytes):
    return b"".join(int(v).to_bytes(record_bytes, "little") for v in values)


def _values(payload, record_bytes):
    return [int.from_bytes(payload[j:j + record_bytes], "little")
            for j in range(0, len(payload), record_bytes)]


class BoardClient:
    """Operations on the board behind ``link`` (a :class:`boards.link.Link`) that carries the
    top of ``config`` (a :class:`boards.tops.TopConfig`). ``progress``: a callable
    ``(what, done, total)`` called as elements or words move, or ``None``."""

    def __init__(self, link, config, *, progress=None, check_info=True):
        from boards.tops import BoardTop
        self.link = link
        self.config = config
        self.top = BoardTop(config)
        # The top is only read here (ports, layouts, core parameters), never elaborated.
        for part in (self.top, self.top.link, self.top.compress, self.top.decompress,
                     self.top.mac):
            if part is not None:
                part._MustUse__silence = True
        self._progress = progress
        self._ports = {}
        for number, (name, direction, layout) in enumerate(self.top.link.ports):
            from hdl.link import record_bytes
            self._ports[name] = (number, layout, record_bytes(layout))
        self.info = link.info() if check_info else None
        if check_info:
            self._check_info()

    def _check_info(self):
        info, top = self.info, self.top
        if info.build_id != self.config.build_id:
            raise BoardMismatch(
                f"Board runs build {info.build_id:08x}, not {self.config.build_id:08x} "
                f"(top {self.config.name!r}): the bitstream was built from another "
                f"configuration; rebuild it or pick the matching --board")
        from boards.protocol import Info
        expected = Info.parse(top.link.info_block())
        if info != expected:
            raise BoardMismatch(f"Board's INFO block {info} differs from the top's {expected}")

    def _port(self, name):
        if name not in self._ports:
            raise ValueError(f"Top {self.config.name!r} has no {name.split('_')[0]} core "
                             f"(its ports: {', '.join(self._ports)})")
        return self._ports[name]

    def _report(self, what, done, total):
        if self._progress is not None:
            self._progress(what, done, total)

    def _batch(self, name):
        """Most records of port ``name`` in one request."""
        _, _, rb = self._port(name)
        return (self.link.max_payload - 1) // rb

    def _write(self, name, values, *, drain=lambda: None, what=None, total=None):
        """Write all ``values`` (packed records) to port ``name``, calling ``drain`` after
        every request (to read outputs that would otherwise hold the core up)."""
        number, _, rb = self._port(name)
        batch = self._batch(name)
        done = stalls = 0
        while done < len(values):
            taken = self.link.write(number, _records(values[done:done + batch], rb), rb)
            done += taken
            stalls = 0 if taken else stalls + 1
            if stalls > 1000:
                raise RuntimeError(f"Port {name} took nothing in 1000 requests")
            drain()
            if what:
                self._report(what, done, total or len(values))
        return done

    def _read(self, name, max_records=None):
        number, _, rb = self._port(name)
        limit = self._batch(name) if max_records is None else min(max_records,
                                                                  self._batch(name))
        return _values(self.link.read(number, limit, rb), rb)

    def status(self):
        """The link counters and the top's status words, by name."""
        return self.link.status(self.top.status_names)

    # ---- compression -------------------------------------------------------------------

    def compress(self, x, config, *, check=True):
        """The frame (bytes) of ``x`` compressed by the board with ``config`` (a
        :class:`golden.CompressionConfig`). ``x`` is first rounded to the engine's input format
        (what the engine sees); ``check`` compares the frame with :func:`golden.compress`
        of those values and raises :class:`ResultMismatch` on any difference."""
        import golden
        from sim.api import unpack_beats
        from sim.compress import engine_beats, engine_descriptor
        from sim.stimulus import cast_to
        engine = self.top.compress
        if engine is None:
            self._port("compress_in")
        x = np.asarray(x)
        descriptor = engine_descriptor(engine, x.shape, config)
        beats = engine_beats(engine, x)
        layout = engine.o.payload.shape()
        words, done = [], [False]

        def drain():
            while not done[0]:
                got = self._read("compress_out")
                if not got:
                    return
                for w in got:
                    cols = unpack_beats(layout, [w])
                    words.append(int(cols["word"][0]))
                    if cols["last"][0]:
                        done[0] = True
                        break

        self._write("compress_cfg", [descriptor])
        self._write("compress_in", beats, drain=drain, what="elements",
                    total=len(beats))
        for _ in range(100000):
            if done[0]:
                break
            drain()
        else:
            raise RuntimeError("The compressed frame did not end")
        size = engine.word_bits // 8
        frame = b"".join(w.to_bytes(size, "little") for w in words)
        if check:
            expected = golden.compress(cast_to(x, engine.in_format).astype(np.float64), config)
            if frame != expected:
                first = next((j for j in range(min(len(frame), len(expected)))
                              if frame[j] != expected[j]), min(len(frame), len(expected)))
                raise ResultMismatch(f"Board frame ({len(frame)} bytes) differs from the "
                                     f"golden model's ({len(expected)} bytes) from byte "
                                     f"{first}")
        return frame

    # ---- decompression -----------------------------------------------------------------

    def decompress(self, frame, *, check=True):
        """Decode one frame (bytes) on the board: a :class:`DecompressResult`. ``check``
        compares status, shape and every element with :func:`golden.decompress` (rounded to
        the engine's output format) and raises :class:`ResultMismatch` on a difference."""
        from hdl.unzero import DecodeError
        from sim.api import unpack_beats
        from sim.decompress import engine_beats, expected_frame
        from sim.stimulus import from_bits
        engine = self.top.decompress
        if engine is None:
            self._port("decompress_in")
        params = self.config.params("decompress")
        lanes = params.get("lanes", 1)
        out_format = params.get("out_format", "fp32")
        words = engine_beats([frame], params.get("word_bits", 32))
        out_layout = engine.o.payload.shape()
        status_layout = engine.status.payload.shape()
        data, statuses = [], []
        ended = [False]

        def drain():
            for w in self._read("decompress_out"):
                cols = unpack_beats(out_layout, [w])
                data.append(np.asarray(cols["data"][0]))
                ended[0] |= bool(cols["last"][0])
            for s in self._read("decompress_status"):
                cols = unpack_beats(status_layout, [s])
                statuses.append({k: np.asarray(v[0]) for k, v in cols.items()})

        self._write("decompress_in", words, drain=drain, what="words")
        for _ in range(100000):
            if statuses and (ended[0] or int(statuses[0]["code"]) != DecodeError.OK.value
                             or not _has_elements(statuses[0])):
                break
            drain()
        else:
            raise RuntimeError("The board gave no status for the frame")
        drain()
        st = statuses[0]
        code = DecodeError(int(st["code"])).name
        ndim = int(st["ndim"])
        shape = tuple(int(d) for d in np.asarray(st["dims"])[:ndim])
        result = DecompressResult(code=code, offset=int(st["offset"]), shape=shape)
        bits = None
        if code == "OK":
            length = shape[-1]
            rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
            beats = np.array(data, dtype=np.int64).reshape(-1, lanes) if data else \
                np.zeros((0, lanes), np.int64)
            bits = beats.reshape(rows, -1) if rows else beats
            values = from_bits(bits[:, :length] if rows else bits, out_format)
            result.values = values.astype(np.float32).reshape(shape)
        if check:
            want = expected_frame(frame, out_format=out_format, lanes=lanes,
                                  elems=engine.elems, block=params.get("block", 32),
                                  outliers=params.get("outliers"),
                                  word_bits=params.get("word_bits", 32),
                                  max_ndim=engine.max_ndim)
            if want is None or want == "unsupported":
                if code == "OK":
                    raise ResultMismatch(f"Board decoded a frame the golden model rejects "
                                         f"({want or 'invalid'})")
            elif code != "OK" or shape != tuple(want[0]) or not np.array_equal(
                    bits.astype(np.int64), want[1].astype(np.int64)):
                raise ResultMismatch(f"Board result (status {code}, shape {shape}) differs "
                                     f"from the golden model's (shape {tuple(want[0])})")
        return result

    # ---- multiply-accumulate -----------------------------------------------------------

    def mac(self, a, g, *, rounding="nearest_even", phase=0, seed=0, check=True):
        """Dot products on the board's shift-MAC array: ``a`` INT4 codes ``(T, P, n)``, ``g``
        FP4 codes ``(T, n)``; returns the ``out_fmt`` codes ``(T, P)``. ``check`` compares them
        with :func:`golden.mac.shift_mac` (as :func:`sim.mac.mac_expected`)."""
        from hdl.mac import mac_config_layout
        from hdl.float import ROUNDING_NAMES
        from sim.api import pack, unpack_beats
        from sim.mac import _core_info, _frame, mac_beats, mac_expected
        core = self.top.mac
        if core is None:
            self._port("mac_in")
        info = _core_info(core)
        frame = {"a": a, "g": g, "rounding": rounding, "phase": phase, "seed": seed}
        a, g, *_ = _frame(frame, 0, info)
        T, n = g.shape
        depth, P = info["depth"], info["units"]
        self._write("mac_cfg", [pack(mac_config_layout, {
            "rounding": ROUNDING_NAMES[rounding], "phase": phase, "seed": seed})])
        out_layout = core.o.payload.shape()
        values = np.zeros((T, P), np.int64)
        overflow = np.zeros(T, bool)
        ends = np.zeros(T, bool)
        beats = mac_beats(core, [frame])
        per_row = len(beats) // T
        start_rows = self.status()["mac_rows"]
        # Rows are read back in groups that fit the array's result memory, which it never
        # waits to overwrite.
        group = depth
        for t0 in range(0, T, group):
            t1 = min(T, t0 + group)
            self._write("mac_in", beats[t0 * per_row:t1 * per_row], what="beats",
                        total=len(beats))
            want_rows = start_rows + t1
            for _ in range(100000):
                if self.status()["mac_rows"] - want_rows >= 0:
                    break
            else:
                raise RuntimeError("The MAC array did not finish its rows")
            addresses = [(start_rows + t) % depth for t in range(t0, t1)]
            got = []

            def drain():
                got.extend(self._read("mac_out"))

            self._write("mac_read", addresses, drain=drain)
            while len(got) < len(addresses):
                drain()
            cols = unpack_beats(out_layout, got)
            values[t0:t1] = np.asarray(cols["values"]).reshape(-1, P)
            ends[t0:t1] = np.asarray(cols["end"]).astype(bool)
            if "overflow" in cols:
                overflow[t0:t1] = np.asarray(cols["overflow"]).astype(bool)
        if check:
            want = mac_expected(frame, core)
            if not np.array_equal(values, want["values"]) or not np.array_equal(
                    ends, want["end"]):
                bad = np.argwhere(values != want["values"])
                raise ResultMismatch(f"Board MAC results differ from the golden model's at "
                                     f"{len(bad)} places, first {bad[:1].tolist()}")
        return values


def _has_elements(status):
    ndim = int(status["ndim"])
    return all(int(d) for d in np.asarray(status["dims"])[:ndim])
