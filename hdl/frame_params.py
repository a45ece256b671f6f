"""Parameters shared by the cores that write or read frames (``docs/codec.md``): the zero mode,
the word width, the number of axes and the element choices of an engine."""

from amaranth.lib import enum

from golden.codebook import Codebook, _check_n_bits
from golden.codec import CODEBOOK_ID, ELEMENT_IDS, MAX_NDIM
from golden.formats import FORMATS


__all__ = ["ZeroMode", "ZERO_MODE_NAMES", "check_word_bits", "check_max_ndim",
           "check_elements", "element_id", "element_code_bits", "element_levels"]


class ZeroMode(enum.Enum, shape=2):
    """Zero mode of a frame, as :data:`golden.codec.ZERO_MODES` (the header's code)."""
    NONE = 0
    ZVC  = 1
    RLE  = 2


#: Zero mode names of :class:`golden.CompressionConfig` and their :class:`ZeroMode`.
ZERO_MODE_NAMES = {"none": ZeroMode.NONE, "zvc": ZeroMode.ZVC, "rle": ZeroMode.RLE}


def check_word_bits(word_bits):
    """``word_bits``, the frame's word width ``W``: 32 or 64."""
    if isinstance(word_bits, bool) or word_bits not in (32, 64):
        raise ValueError(f"Word width must be 32 or 64 bits, not {word_bits!r}")
    return int(word_bits)


def check_max_ndim(max_ndim):
    """``max_ndim``, the most axes of a frame's tensor an engine handles: 1..15."""
    if isinstance(max_ndim, bool) or not isinstance(max_ndim, int) \
            or not 1 <= max_ndim <= MAX_NDIM:
        raise ValueError(f"Maximum number of axes must be an integer between 1 and {MAX_NDIM}, "
                         f"not {max_ndim!r}")
    return max_ndim


def check_elements(elems):
    """The element choices of an engine, as a tuple: element names (from
    :data:`golden.ELEMENT_IDS`), :class:`golden.Codebook` (fixed levels) and codebook index
    widths ``N`` (int 1..4: ``2^N`` levels loaded at run time); no choice twice. A single
    choice may be given without the tuple."""
    if isinstance(elems, (str, Codebook, int)):
        elems = (elems,)
    if not isinstance(elems, (tuple, list)) or not elems:
        raise ValueError(f"Element choices must be a non-empty tuple of element names, "
                         f"Codebooks and codebook index widths, not {elems!r}")
    checked = []
    for elem in elems:
        if isinstance(elem, str):
            if elem not in ELEMENT_IDS:
                raise ValueError(f"Element choice must be one of {', '.join(ELEMENT_IDS)}, a "
                                 f"Codebook or a codebook index width, not {elem!r}")
        elif isinstance(elem, Codebook):
            pass
        elif isinstance(elem, int) and not isinstance(elem, bool):
            try:
                _check_n_bits(elem)
            except (ValueError, TypeError):
                raise ValueError(f"Codebook index width must be between 1 and 4, "
                                 f"not {elem!r}") from None
        else:
            raise TypeError(f"Element choice must be an element name, a Codebook or a codebook "
                            f"index width, not {elem!r}")
        key = elem.level_codes if isinstance(elem, Codebook) else elem
        if any(type(e) is type(elem) and
               (e.level_codes if isinstance(e, Codebook) else e) == key for e in checked):
            raise ValueError(f"Element choices must not repeat, but {elem!r} does")
        checked.append(elem)
    return tuple(checked)


def element_id(elem):
    """The header's element id of a checked choice (:data:`golden.codec.CODEBOOK_ID` for a
    codebook)."""
    return ELEMENT_IDS.index(elem) if isinstance(elem, str) else CODEBOOK_ID


def element_code_bits(elem):
    """Width in bits of the element codes of a checked choice (``N + 1`` for a codebook)."""
    if isinstance(elem, str):
        return FORMATS[elem].bits
    if isinstance(elem, Codebook):
        return elem.bits
    return elem + 1


def element_levels(elem):
    """Number of codebook levels of a checked choice (0 for an element format)."""
    if isinstance(elem, str):
        return 0
    return len(elem.levels) if isinstance(elem, Codebook) else 1 << elem
