"""The compressed frame format (SPEC section 5): MX/BFP blocks, zero compression and bit packing.

A frame is a self-describing sequence of ``W``-bit words (``W`` = 32 or 64): a header with the
whole configuration and the shape, the blocks of :func:`golden.encode_blocks` one after the
other, and a CRC-32 trailer. Every field is an unsigned integer of a fixed width appended
LSB-first to one bit stream; stream bit ``i`` is bit ``i mod W`` of word ``i // W`` and the
words are stored little-endian, so stream bit ``i`` is also bit ``i mod 8`` of byte ``i // 8``.
The layout is in ``docs/codec.md``; this module is its reference implementation:

- :class:`CompressionConfig`: what a frame is compressed with;
- :func:`compress` (array to bytes), :func:`decompress` (bytes to the float64 values of
  :func:`golden.quantize_mx`) and :func:`decompress_blocks` (bytes to the configuration, the
  shape and the :class:`golden.Blocks`);
- :class:`FrameError`, the one exception for malformed frames;
- :func:`compression_report`: sizes, error and the order-0 entropy bound.
"""

import math
import zlib
from dataclasses import dataclass

import numpy as np

from . import rng
from .codebook import Codebook, log as log_codebook, uniform as uniform_codebook
from .formats import FORMATS, FloatFormat, ROUNDING_MODES, check_rounding, _code_dtype
from .mx import Blocks, check_block, check_element_or_codebook, encode_blocks, decode_blocks
from .outliers import OutlierFormat, check_outliers


__all__ = ["ELEMENT_IDS", "CODEBOOK_ID", "MAGIC", "VERSION", "ZERO_MODES", "WORD_BITS",
           "MAX_NDIM", "SHAPE_PRODUCT_LIMIT", "CompressionConfig", "FrameError", "BitWriter", "BitReader", "compress",
           "decompress", "decompress_blocks", "compression_report", "header_bits",
           "block_bits"]


#: A frame's shape must multiply (an axis of 0 counted as 1) to less than this. 2^53: every
#: element index is exact in float64, and the padded float64 array of any frame, even one with
#: no elements but huge other axes, is one NumPy can allocate (below 2^63 bytes).
SHAPE_PRODUCT_LIMIT = 1 << 53


#: Element ids (6 bits): the position in this tuple.
ELEMENT_IDS = ("e5m2", "e4m3", "e3m2", "e2m3", "e2m1",
               "int2", "int3", "int4", "int5", "int6", "int7", "int8")
#: Element id of a codebook element.
CODEBOOK_ID = 63
#: First header word: the bytes "LPCF".
MAGIC = 0x4643504C
VERSION = 1
#: Zero modes, code = position.
ZERO_MODES = ("none", "zvc", "rle")
WORD_BITS = (32, 64)
#: Largest number of axes (the ndim field has 4 bits; 0 is not allowed).
MAX_NDIM = 15

#: Header fields before the dimensions: (name, width).
_HEADER_FIELDS = (("magic", 32), ("version", 8), ("word_width", 1), ("zero_mode", 2),
                  ("rounding", 2), ("sr_bits", 5), ("log2_block", 3), ("element", 6),
                  ("k", 3), ("d", 3), ("mo", 4), ("n", 3), ("seed", 32), ("ndim", 4))
_FIXED_HEADER_BITS = sum(width for _, width in _HEADER_FIELDS)      # 108
_DIM_BITS = 32
_LEVEL_BITS = 9
#: The smallest frame: the fixed header and one dimension in one word-aligned header
#: (5 words of 32 bits), and the trailer word.
_MIN_FRAME_BYTES = 6 * 4


class FrameError(ValueError):
    """A malformed frame: the message says what is wrong and at which word offset."""


# Configuration ---------------------------------------------------------------------------------

def _element_name(elem):
    if isinstance(elem, FloatFormat):
        for name in ELEMENT_IDS:
            if FORMATS[name] == elem:
                return name
    elif isinstance(elem, str) and elem in ELEMENT_IDS:
        return elem
    elif not isinstance(elem, str):
        raise TypeError(f"Element format must be a preset name, a FloatFormat or None, "
                        f"not {elem!r}")
    raise ValueError(f"Element format must be one of {', '.join(ELEMENT_IDS)} (or None with a "
                     f"codebook), not {str(elem)!r}")


@dataclass(frozen=True)
class CompressionConfig:
    """What a frame is compressed with; every field is stored in the frame header.

    Parameters
    ----------
    elem : str or None
        Element format, one of :data:`ELEMENT_IDS` (a FloatFormat equal to one of them is
        stored as its name), or ``None`` with ``codebook``.
    block : int
        Elements per shared scale, a power of two from 2 to 64.
    rounding : str
        One of :data:`golden.ROUNDING_MODES`.
    seed, sr_bits : int
        Stochastic rounding seed (0 .. 2^32-1) and bits per draw (1 .. 24).
    outliers : OutlierFormat or None
        Outlier records per block (``K`` below ``block``).
    codebook : Codebook or None
        Codebook elements instead of ``elem``.
    zero_mode : str
        ``"none"``, ``"zvc"`` (non-zero mask) or ``"rle"`` (zero-run tokens).
    word_bits : int
        Memory word width ``W``, 32 or 64.
    """
    elem: object = "e4m3"
    block: int = 32
    rounding: str = "nearest_even"
    seed: int = 0
    sr_bits: int = 8
    outliers: object = None
    codebook: object = None
    zero_mode: str = "none"
    word_bits: int = 32

    def __post_init__(self):
        if self.codebook is not None:
            check_element_or_codebook(self.elem, self.codebook)
        elif self.elem is None:
            check_element_or_codebook(None, None)
        else:
            object.__setattr__(self, "elem", _element_name(self.elem))
        object.__setattr__(self, "block", check_block(self.block))
        check_rounding(self.rounding)
        object.__setattr__(self, "seed", rng._check_seed(self.seed))
        object.__setattr__(self, "sr_bits", rng.check_sr_bits(self.sr_bits))
        check_outliers(self.outliers, self.block)
        if self.zero_mode not in ZERO_MODES:
            raise ValueError(f"Zero mode must be one of {', '.join(ZERO_MODES)}, "
                             f"not {self.zero_mode!r}")
        if isinstance(self.word_bits, bool) or self.word_bits not in WORD_BITS:
            raise ValueError(f"Word width must be 32 or 64 bits, not {self.word_bits!r}")
        object.__setattr__(self, "word_bits", int(self.word_bits))

    # Derived widths (all plain ints) ----------------------------------------------------------

    @property
    def k(self):
        """Outlier records per block."""
        return 0 if self.outliers is None else self.outliers.k

    @property
    def element_id(self):
        return CODEBOOK_ID if self.codebook is not None else ELEMENT_IDS.index(self.elem)

    @property
    def code_bits(self):
        """Width ``w`` of an element code."""
        if self.codebook is not None:
            return self.codebook.bits
        return FORMATS[self.elem].bits

    @property
    def index_bits(self):
        """``log2 B``: width of a record index and of an rle run."""
        return self.block.bit_length() - 1

    @property
    def count_bits(self):
        """Width of a block's record count, ``ceil(log2(K + 1))`` (0 without outliers)."""
        return self.k.bit_length()

    @property
    def record_code_bits(self):
        """Width of a record's code, ``1 + D + Mo`` (0 without outliers)."""
        return self.outliers.record_format.bits if self.k else 0

    @property
    def prefix_bits(self):
        """Bits of a block before its element codes: scale, count and records."""
        return 8 + self.count_bits + self.k * (self.index_bits + self.record_code_bits)

    def quantize_options(self):
        """Keyword arguments of :func:`golden.encode_blocks` and :func:`golden.quantize_mx`."""
        return dict(elem=self.elem, block=self.block, rounding=self.rounding, seed=self.seed,
                    sr_bits=self.sr_bits, outliers=self.outliers, codebook=self.codebook)


# Bit stream ------------------------------------------------------------------------------------

class BitWriter:
    """Appends unsigned fields LSB-first to a bit stream; :meth:`getvalue` gives its bytes
    (stream bit ``i`` is bit ``i mod 8`` of byte ``i // 8``)."""

    def __init__(self):
        self._chunks = []
        self.pos = 0

    def write(self, value, width):
        """One field of ``width`` bits."""
        value = int(value)
        if not 0 <= value < 1 << width:
            raise ValueError(f"Field value {value} does not fit in {width} bits")
        if width:
            self._chunks.append(np.array([value >> j & 1 for j in range(width)], np.uint8))
            self.pos += width

    def write_array(self, values, widths):
        """Many fields at once, in order: ``values`` (unsigned, < 2^64) and their ``widths``
        (0..64; a scalar or an array of the same shape; width-0 fields take no bits)."""
        values = np.asarray(values).astype(np.uint64)
        widths = np.broadcast_to(np.asarray(widths, np.int64), values.shape).reshape(-1)
        values = values.reshape(-1)
        if values.size == 0:
            return
        narrow = widths < 64
        if (values[narrow] >> widths[narrow].astype(np.uint64)).any():
            raise ValueError("A field value does not fit in its width")
        keep = widths > 0
        if not keep.all():
            values, widths = values[keep], widths[keep]
        total = int(widths.sum())
        starts = np.cumsum(widths) - widths
        shift = (np.arange(total, dtype=np.int64) - np.repeat(starts, widths)).astype(np.uint64)
        self._chunks.append(((np.repeat(values, widths) >> shift) & np.uint64(1))
                            .astype(np.uint8))
        self.pos += total

    def align(self, word_bits):
        """Zero bits up to the next multiple of ``word_bits``."""
        pad = -self.pos % word_bits
        if pad:
            self._chunks.append(np.zeros(pad, np.uint8))
            self.pos += pad

    def getvalue(self):
        if self.pos % 8:
            raise ValueError("The bit stream does not end on a byte boundary")
        if not self._chunks:
            return b""
        return np.packbits(np.concatenate(self._chunks), bitorder="little").tobytes()


class BitReader:
    """Reads fields LSB-first from ``data`` (bytes) up to bit ``limit``; running past it raises
    :class:`FrameError` ("truncated"), naming the word offset for words of ``word_bits``."""

    def __init__(self, data, limit=None, word_bits=32):
        self.data = bytes(data)
        self.limit = 8 * len(self.data) if limit is None else limit
        self.word_bits = word_bits
        self.pos = 0
        self._bits = None

    def word(self, pos=None):
        """The word offset of stream bit ``pos`` (default: the read position)."""
        return (self.pos if pos is None else pos) // self.word_bits

    def need(self, end, what):
        if end > self.limit:
            raise FrameError(f"Frame truncated: {what} needs the stream up to word "
                             f"{-(-end // self.word_bits)} but the data ends at word "
                             f"{self.limit // self.word_bits}")

    def peek(self, pos, width):
        """The field of ``width`` bits at stream bit ``pos`` (must lie below the limit)."""
        end = pos + width
        chunk = int.from_bytes(self.data[pos >> 3:(end + 7) >> 3], "little")
        return (chunk >> (pos & 7)) & ((1 << width) - 1)

    def read(self, width, what="a field"):
        self.need(self.pos + width, what)
        value = self.peek(self.pos, width)
        self.pos += width
        return value

    @property
    def bits(self):
        if self._bits is None:
            self._bits = np.unpackbits(np.frombuffer(self.data, np.uint8), bitorder="little")
        return self._bits

    def read_at(self, offsets, width):
        """The fields of ``width`` bits (0..64) at the stream bit ``offsets`` (an array; all
        fields must lie below the limit): uint64, the shape of ``offsets``."""
        offsets = np.asarray(offsets, np.int64)
        out = np.zeros(offsets.shape, np.uint64)
        if width == 0 or offsets.size == 0:
            return out
        flat, bits = out.reshape(-1), self.bits
        offs = offsets.reshape(-1)
        weights = np.arange(width, dtype=np.uint64)
        step = max(1, (1 << 22) // width)
        for start in range(0, offs.size, step):
            part = offs[start:start + step]
            taken = bits[part[:, None] + np.arange(width)].astype(np.uint64)
            flat[start:start + step] = (taken << weights).sum(axis=1, dtype=np.uint64)
        return out


# Layout ----------------------------------------------------------------------------------------

def header_bits(config, ndim):
    """Bits of a header before its padding to a word boundary."""
    levels = 0 if config.codebook is None else len(config.codebook.levels)
    return _FIXED_HEADER_BITS + _DIM_BITS * ndim + _LEVEL_BITS * levels


def block_bits(config, nonzero=None):
    """Bits of one block of the payload; ``nonzero`` (the block's number of non-zero element
    codes) is needed for ``zvc`` and ``rle``."""
    base = config.prefix_bits
    w, b = config.code_bits, config.block
    if config.zero_mode == "none":
        return base + b * w
    if config.zero_mode == "zvc":
        return base + b + nonzero * w
    return base + config.index_bits + 1 + nonzero * (config.index_bits + w)


def _check_x(x):
    x = np.asarray(x)
    if not 1 <= x.ndim <= MAX_NDIM:
        raise ValueError(f"Input must have between 1 and {MAX_NDIM} axes, not {x.ndim}")
    if any(d >= 1 << _DIM_BITS for d in x.shape):
        raise ValueError(f"Every dimension must be below 2**32, not {x.shape}")
    return x


def _write_header(writer, config, shape):
    o = config.outliers
    d, mo = (0, 0) if o is None else (o.exp_bits, o.man_bits)
    n = 0 if config.codebook is None else config.codebook.n_bits
    values = dict(magic=MAGIC, version=VERSION, word_width=WORD_BITS.index(config.word_bits),
                  zero_mode=ZERO_MODES.index(config.zero_mode),
                  rounding=ROUNDING_MODES.index(config.rounding), sr_bits=config.sr_bits,
                  log2_block=config.index_bits, element=config.element_id, k=config.k, d=d,
                  mo=mo, n=n, seed=config.seed, ndim=len(shape))
    for name, width in _HEADER_FIELDS:
        writer.write(values[name], width)
    writer.write_array(np.array(shape, np.uint64), _DIM_BITS)
    if n:
        writer.write_array(np.array(config.codebook.level_codes, np.uint64), _LEVEL_BITS)
    writer.align(config.word_bits)


def _block_fields(config, blocks):
    """The fields of every block in stream order: ``(values, widths)``, both of shape
    ``(nblocks, F)`` (a field of width 0 is absent)."""
    b, w, k = config.block, config.code_bits, config.k
    scales = blocks.scales.reshape(-1).astype(np.uint64)
    nb = scales.size
    codes = blocks.codes.reshape(nb, b).astype(np.uint64)
    values = [scales[:, None]]
    widths = [np.full((nb, 1), 8)]
    if k:
        index = blocks.outlier_index.reshape(nb, k).astype(np.uint64)
        records = blocks.outlier_codes.reshape(nb, k).astype(np.uint64)
        values.append(np.full((nb, 1), k, np.uint64))
        widths.append(np.full((nb, 1), config.count_bits))
        values.append(np.stack([index, records], axis=-1).reshape(nb, 2 * k))
        widths.append(np.broadcast_to(
            np.tile([config.index_bits, config.record_code_bits], k), (nb, 2 * k)))
    nz = codes != 0
    if config.zero_mode == "none":
        values.append(codes)
        widths.append(np.full((nb, b), w))
    elif config.zero_mode == "zvc":
        mask = (nz.astype(np.uint64) << np.arange(b, dtype=np.uint64)).sum(
            axis=1, dtype=np.uint64)
        values += [mask[:, None], codes]
        widths += [np.full((nb, 1), b), np.where(nz, w, 0)]
    else:
        j = np.arange(b)
        last = np.maximum.accumulate(np.where(nz, j, -1), axis=1)
        previous = np.concatenate([np.full((nb, 1), -1), last[:, :-1]], axis=1)
        runs = (j - previous - 1).astype(np.uint64)
        values.append(nz.sum(axis=1).astype(np.uint64)[:, None])
        widths.append(np.full((nb, 1), config.index_bits + 1))
        values.append(np.stack([np.where(nz, runs, 0), codes], axis=-1).reshape(nb, 2 * b))
        widths.append(np.stack([np.where(nz, config.index_bits, 0), np.where(nz, w, 0)],
                               axis=-1).reshape(nb, 2 * b))
    return (np.concatenate(values, axis=1),
            np.concatenate([np.broadcast_to(part, (nb, part.shape[1])) for part in widths],
                           axis=1))


def _frame_from_blocks(config, shape, blocks):
    writer = BitWriter()
    _write_header(writer, config, shape)
    values, widths = _block_fields(config, blocks)
    writer.write_array(values, widths)
    writer.align(config.word_bits)
    body = writer.getvalue()
    trailer = zlib.crc32(body).to_bytes(config.word_bits // 8, "little")
    return body + trailer


def compress(x, config=None):
    """The frame (bytes) of ``x`` quantized with ``config`` (a :class:`CompressionConfig`,
    default ``CompressionConfig()``): ``x`` has 1 to 15 axes, each below 2^32 elements."""
    config = _check_config(config)
    x = _check_x(x)
    blocks = encode_blocks(x, **config.quantize_options())
    return _frame_from_blocks(config, x.shape, blocks)


def _check_config(config):
    if config is None:
        return CompressionConfig()
    if not isinstance(config, CompressionConfig):
        raise TypeError(f"Config must be a CompressionConfig, not {config!r}")
    return config


# Decompression ---------------------------------------------------------------------------------

def _named_codebook(levels):
    n = len(levels).bit_length() - 1
    for maker in (uniform_codebook, log_codebook):
        candidate = maker(n)
        if candidate.levels == levels:
            return candidate
    return Codebook(levels)


def _read_header(frame):
    """Checks in the documented order up to the CRC, then the header fields. Returns
    ``(config, shape, reader)`` with the reader at the first payload bit and its limit at the
    trailer."""
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        raise TypeError(f"Frame must be bytes, not {type(frame).__name__}")
    frame = bytes(frame)
    size = len(frame)
    if size % 4:
        raise FrameError(f"Frame length {size} bytes is not a whole number of 32-bit words")
    if size < _MIN_FRAME_BYTES:
        raise FrameError(f"Frame truncated: {size} bytes ({size // 4} words), shorter than the "
                         f"smallest frame ({_MIN_FRAME_BYTES} bytes)")
    reader = BitReader(frame)
    magic = reader.read(32)
    if magic != MAGIC:
        raise FrameError(f"Bad magic 0x{magic:08X} at word 0, expected 0x{MAGIC:08X} (\"LPCF\")")
    version = reader.read(8)
    if version != VERSION:
        raise FrameError(f"Unsupported version {version} at word 1 (bit 32), this decoder "
                         f"reads version {VERSION}")
    word_bits = WORD_BITS[reader.read(1)]
    word_bytes = word_bits // 8
    if size % word_bytes:
        raise FrameError(f"Frame length {size} bytes is not a whole number of "
                         f"{word_bits}-bit words (the header's word width)")
    words = size // word_bytes
    reader.word_bits = word_bits
    stored = int.from_bytes(frame[-word_bytes:], "little")
    computed = zlib.crc32(frame[:-word_bytes])
    if stored & 0xFFFFFFFF != computed:
        raise FrameError(f"CRC mismatch in the trailer at word {words - 1}: stored "
                         f"0x{stored & 0xFFFFFFFF:08X}, computed 0x{computed:08X}")
    if stored >> 32:
        raise FrameError(f"Bad field value: the upper 32 bits of the trailer at word "
                         f"{words - 1} are 0x{stored >> 32:08X}, not 0")
    reader.limit = 8 * (size - word_bytes)

    def bad(what, bit):
        return FrameError(f"Bad field value: {what} at word {bit // word_bits} "
                          f"(bit {bit})")

    fields = {"magic": magic, "version": version, "word_width": word_bits == 64}
    starts = {}
    for name, width in _HEADER_FIELDS[3:]:
        starts[name] = reader.pos
        fields[name] = reader.read(width, "the header")
    if fields["zero_mode"] >= len(ZERO_MODES):
        raise bad(f"zero mode {fields['zero_mode']} (0 none, 1 zvc, 2 rle)",
                  starts["zero_mode"])
    if not 1 <= fields["sr_bits"] <= 24:
        raise bad(f"sr_bits {fields['sr_bits']} (1..24)", starts["sr_bits"])
    if not 1 <= fields["log2_block"] <= 6:
        raise bad(f"log2(block) {fields['log2_block']} (1..6)", starts["log2_block"])
    block = 1 << fields["log2_block"]
    element, n = fields["element"], fields["n"]
    if element != CODEBOOK_ID and element >= len(ELEMENT_IDS):
        raise bad(f"element id {element} unknown (0..{len(ELEMENT_IDS) - 1} or "
                  f"{CODEBOOK_ID})", starts["element"])
    if n > 4:
        raise bad(f"codebook index width {n} (0..4)", starts["n"])
    if (element == CODEBOOK_ID) != (n > 0):
        raise bad(f"codebook index width {n} with element id {element} (a codebook has id "
                  f"{CODEBOOK_ID} and N 1..4, a format N 0)", starts["n"])
    k, d, mo = fields["k"], fields["d"], fields["mo"]
    if k > 4 or k >= block:
        raise bad(f"K {k} too large (0..{min(4, block - 1)} for block {block})", starts["k"])
    if not (k == d == mo == 0):
        if not 1 <= d <= 6:
            raise bad(f"outlier exponent width D {d} (1..6)", starts["d"])
        if mo > 12:
            raise bad(f"outlier mantissa width Mo {mo} (0..12)", starts["mo"])
    ndim = fields["ndim"]
    if ndim == 0:
        raise bad("ndim 0 (1..15)", starts["ndim"])
    reader.need(reader.pos + _DIM_BITS * ndim + (_LEVEL_BITS << n if n else 0), "the header")
    shape = tuple(int(v) for v in reader.read_at(reader.pos + _DIM_BITS * np.arange(ndim),
                                                 _DIM_BITS))
    dims_start = reader.pos
    reader.pos += _DIM_BITS * ndim
    if math.prod(max(dim, 1) for dim in shape) >= SHAPE_PRODUCT_LIMIT:
        raise bad(f"shape {shape} too large (the product of its axes, 0 counted as 1, "
                  f"must be below 2^53)", dims_start)
    codebook = None
    if n:
        levels_start = reader.pos
        codes = reader.read_at(reader.pos + _LEVEL_BITS * np.arange(1 << n), _LEVEL_BITS)
        reader.pos += _LEVEL_BITS << n
        try:
            codebook = _named_codebook(tuple(int(c) / 256 for c in codes))
        except ValueError as error:
            raise bad(f"codebook levels {[int(c) for c in codes]} ({error})",
                      levels_start) from None
    _check_padding(reader, word_bits, "header")
    outliers = None if k == d == mo == 0 else OutlierFormat(k, d, mo)
    config = CompressionConfig(
        elem=None if n else ELEMENT_IDS[element], block=block,
        rounding=ROUNDING_MODES[fields["rounding"]], seed=fields["seed"],
        sr_bits=fields["sr_bits"], outliers=outliers, codebook=codebook,
        zero_mode=ZERO_MODES[fields["zero_mode"]], word_bits=word_bits)
    return config, shape, reader


def _check_padding(reader, word_bits, what):
    pad = -reader.pos % word_bits
    reader.need(reader.pos + pad, f"the padding after the {what}")
    if pad and reader.peek(reader.pos, pad):
        raise FrameError(f"Bad field value: non-zero padding after the {what} at word "
                         f"{reader.word()}")
    reader.pos += pad


def decompress_blocks(frame):
    """The configuration, the shape and the :class:`golden.Blocks` of a frame (as
    :func:`golden.encode_blocks` gave them to :func:`compress`). Raises :class:`FrameError`
    for a malformed frame."""
    config, shape, reader = _read_header(frame)
    b, w, k, wb = config.block, config.code_bits, config.k, config.word_bits
    lead = shape[:-1]
    nb_row = -(-shape[-1] // b)
    nb = math.prod(lead) * nb_row
    payload = reader.pos
    minimum = block_bits(config, 0)
    if nb * minimum > reader.limit - payload:
        raise FrameError(f"Frame truncated: {nb} blocks of at least {minimum} bits each do not "
                         f"fit between word {payload // wb} and the trailer at word "
                         f"{reader.limit // wb}")
    prefix, ib = config.prefix_bits, config.index_bits
    starts = np.empty(nb, np.int64)
    counts = np.zeros(nb, np.int64)
    masks = None
    pos = payload
    mode = config.zero_mode
    if mode == "none":
        starts[:] = payload + minimum * np.arange(nb)
        pos = payload + minimum * nb
    elif mode == "zvc":
        masks = np.zeros(nb, np.uint64)
        for i in range(nb):
            starts[i] = pos
            reader.need(pos + prefix + b, f"block {i}")
            mask = reader.peek(pos + prefix, b)
            masks[i] = mask
            pos += prefix + b + mask.bit_count() * w
    else:
        for i in range(nb):
            starts[i] = pos
            reader.need(pos + prefix + ib + 1, f"block {i}")
            count = reader.peek(pos + prefix, ib + 1)
            if count > b:
                raise FrameError(f"Bad field value: rle block {i} at word {pos // wb} has "
                                 f"{count} tokens, more than fit in a block of {b}")
            counts[i] = count
            pos += prefix + ib + 1 + count * (ib + w)
    reader.need(pos, f"block {nb - 1}")
    # Fixed part of every block: scale, count, records.
    scales = reader.read_at(starts, 8).astype(np.uint8)
    record_dtype = _code_dtype(config.outliers.record_format) if k else np.uint8
    index = np.zeros((nb, k), np.uint8)
    records = np.zeros((nb, k), record_dtype)
    if k:
        stored = reader.read_at(starts + 8, config.count_bits)
        wrong = np.flatnonzero(stored != k)
        if wrong.size:
            i = int(wrong[0])
            relation = "exceeds" if stored[i] > k else "is below"
            raise FrameError(f"Bad field value: record count {int(stored[i])} of block {i} at "
                             f"word {int(starts[i]) // wb} {relation} K = {k} (version 1 "
                             f"frames store all K records)")
        record_starts = (starts[:, None] + 8 + config.count_bits
                         + (ib + config.record_code_bits) * np.arange(k))
        index[:] = reader.read_at(record_starts, ib)
        records[:] = reader.read_at(record_starts + ib, config.record_code_bits)
        # An index has log2(B) bits: it cannot name a slot outside its block.
    code_dtype = np.uint8 if config.codebook is not None else _code_dtype(FORMATS[config.elem])
    codes = np.zeros((nb, b), np.uint64)
    if mode == "none":
        codes[:] = reader.read_at(starts[:, None] + prefix + w * np.arange(b), w)
    elif mode == "zvc":
        nz = ((masks[:, None] >> np.arange(b, dtype=np.uint64)) & np.uint64(1)).astype(bool)
        rank = np.cumsum(nz, axis=1) - 1
        offsets = starts[:, None] + prefix + b + w * rank
        codes[nz] = reader.read_at(offsets[nz], w)
    else:
        total = int(counts.sum())
        owner = np.repeat(np.arange(nb), counts)
        first = np.cumsum(counts) - counts
        token = np.arange(total) - np.repeat(first, counts)
        offsets = starts[owner] + prefix + ib + 1 + (ib + w) * token
        runs = reader.read_at(offsets, ib).astype(np.int64)
        values = reader.read_at(offsets + ib, w)
        # position of a token's code: the previous token's position + run + 1 (from -1)
        done = np.concatenate([[0], np.cumsum(runs + 1)])
        position = done[1:] - done[first][owner] - 1
        past = np.flatnonzero(position >= b)
        if past.size:
            t = int(past[0])
            raise FrameError(f"Bad field value: rle run {int(runs[t])} of token {int(token[t])} "
                             f"in block {int(owner[t])} at word {int(offsets[t]) // wb} runs "
                             f"past the end of the block ({b} elements)")
        codes[owner, position] = values
    reader.pos = pos
    _check_padding(reader, wb, "payload")
    if reader.pos != reader.limit:
        extra = (reader.limit - reader.pos) // wb
        raise FrameError(f"Trailing garbage: {extra} extra word(s) between the end of the "
                         f"payload at word {reader.word()} and the trailer at word "
                         f"{reader.limit // wb}")
    blocks = Blocks(scales.reshape(lead + (nb_row,)),
                    codes.astype(code_dtype).reshape(lead + (nb_row * b,)),
                    index.reshape(lead + (nb_row, k)), records.reshape(lead + (nb_row, k)))
    return config, shape, blocks


def decompress(frame):
    """The float64 values of a frame, in its shape: equal to :func:`golden.quantize_mx` of
    the compressed input with the frame's configuration (NaN for blocks that held a NaN or
    an Inf). Raises :class:`FrameError` for a malformed frame."""
    config, shape, blocks = decompress_blocks(frame)
    o = config.quantize_options()
    values = decode_blocks(blocks, o["elem"], o["block"], outliers=o["outliers"],
                           codebook=o["codebook"])
    return values[..., :shape[-1]].reshape(shape)


# Statistics ------------------------------------------------------------------------------------

def compression_report(x, config=None):
    """Sizes, error and the order-0 entropy bound of ``x`` compressed with ``config``.

    Returns a dict (``n`` is the element count of ``x``, ``nblocks`` the number of blocks):

    - ``frame_bytes``, ``elements``;
    - ``bits_per_element``: ``8 * frame_bytes / n``; ``ratio_fp32``: ``32 / bits_per_element``,
      ``ratio_bf16``: ``16 / bits_per_element``;
    - ``rmse`` and ``sqnr_db`` of the quantized values against ``x`` over the elements of the
      blocks without NaN/Inf: ``sqrt(mean((q - x)^2))`` and ``10 log10(sum x^2 / sum (q - x)^2)``
      (``inf`` for no error and some signal; NaN with no such element or no signal and no
      error);
    - ``entropy_h0``: the empirical entropy in bits of the element codes (all
      ``nblocks * B`` stored codes, padding and outlier slots included);
    - ``entropy_bits_per_element``: ``(entropy_h0 * nblocks * B + 8 * nblocks + record bits
      + header bits + trailer bits) / n``, where the record bits are those stored
      (``nblocks * (ceil(log2(K+1)) + K * (log2 B + 1 + D + Mo))``) and the header (padded
      to its word boundary) and trailer are as stored;
    - ``packing_overhead``: ``bits_per_element / entropy_bits_per_element - 1``.
    """
    config = _check_config(config)
    x = _check_x(x)
    n = x.size
    if n == 0:
        raise ValueError("Input must have at least one element")
    blocks = encode_blocks(x, **config.quantize_options())
    frame = _frame_from_blocks(config, x.shape, blocks)
    o = config.quantize_options()
    q = decode_blocks(blocks, o["elem"], o["block"], outliers=o["outliers"],
                      codebook=o["codebook"])[..., :x.shape[-1]]
    xf = np.asarray(x, np.float64)
    ok = ~np.isnan(q)
    error = q[ok] - xf[ok]
    noise = float(np.sum(error * error))
    signal = float(np.sum(xf[ok] * xf[ok]))
    rmse = math.sqrt(noise / error.size) if error.size else math.nan
    if error.size == 0 or signal == 0 and noise == 0:
        sqnr = math.nan
    elif noise == 0:
        sqnr = math.inf
    else:
        sqnr = 10 * math.log10(signal / noise) if signal > 0 else -math.inf
    codes = blocks.codes.reshape(-1)
    _, counts = np.unique(codes, return_counts=True)
    p = counts / codes.size
    h0 = float(-(p * np.log2(p)).sum()) + 0.0          # + 0.0: no -0.0 for a single code
    nblocks = blocks.scales.size
    wb = config.word_bits
    header = -(-header_bits(config, x.ndim) // wb) * wb
    record_bits = nblocks * (config.prefix_bits - 8)
    entropy_bits = h0 * codes.size + 8 * nblocks + record_bits + header + wb
    bits = 8 * len(frame)
    return {
        "frame_bytes": len(frame),
        "elements": n,
        "bits_per_element": bits / n,
        "ratio_fp32": 32 * n / bits,
        "ratio_bf16": 16 * n / bits,
        "rmse": rmse,
        "sqnr_db": sqnr,
        "entropy_h0": h0,
        "entropy_bits_per_element": entropy_bits / n,
        "packing_overhead": bits / entropy_bits - 1,
    }
