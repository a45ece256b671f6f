"""The host end of the UART link (protocol in ``docs/board.md``, bytes in :mod:`boards.protocol`).

:class:`Link` runs requests over a *transport*: any object with the part of pyserial's
interface used here, ``write(data)``, ``read(n)`` (up to ``n`` bytes, ``b""`` when nothing
came within ``timeout``), a settable ``timeout`` attribute and, optionally,
``reset_input_buffer()``. :func:`open_serial` gives one for a serial device or a pyserial URL
(``socket://host:port`` reaches the simulated board's TCP bridge).

Retries
-------
A ``BAD_CRC`` NAK means the board did nothing, so any request is sent again (up to
``retries`` more times). A response that does not come within ``timeout`` of silence, or
comes corrupt, is different: the board may have carried out the request and only the answer
was lost. ``INFO`` and ``STATUS`` change nothing, so they are retried; a lost ``WRITE`` answer
hides how many records the core took and a lost ``READ`` answer loses records taken from the
core, so those raise :class:`LinkTimeout` at once (the stream is then in an unknown state and
the caller must start over). Before any resend after a timeout or a corrupt answer the link
waits ``idle_gap`` seconds, longer than the board's idle timeout (2000 bit times), so the
board's parser drops a partial request, and then empties the input buffer.
"""

import struct
import time

from .protocol import (Command, FrameDecoder, Info, Status, encode_frame, parse_status,
                       read_payload, write_payload)

__all__ = ["LinkError", "LinkTimeout", "LinkNAK", "Link", "open_serial", "IDLE_GAP_BITS"]

#: Default ``idle_gap`` in bit times: above the boards' 2000-bit idle timeout.
IDLE_GAP_BITS = 2500
_IDEMPOTENT = frozenset({Command.INFO, Command.STATUS})


class LinkError(Exception):
    """The link failed."""


class LinkTimeout(LinkError):
    """No response, or only a corrupt one."""


class LinkNAK(LinkError):
    """The board answered with a NAK; ``status`` is its :class:`~boards.protocol.Status`
    (or the raw code if it is not one)."""

    def __init__(self, status, command=None):
        try:
            status = Status(status)
        except ValueError:
            pass
        self.status = status
        self.command = command
        name = status.name if isinstance(status, Status) else f"status {status:#04x}"
        super().__init__(f"{_command_name(command)} answered with {name}")


def _command_name(code):
    try:
        return Command(code).name
    except ValueError:
        return f"Command {code:#04x}" if isinstance(code, int) else "Request"


class Link:
    """Requests and answers over ``transport``.

    ``timeout`` is the silence (seconds) after which a response counts as lost; ``retries``
    the number of resends allowed (see the module notes for which failures are retried);
    ``idle_gap`` the wait before a resend after a lost or corrupt response (default
    :data:`IDLE_GAP_BITS` bit times at ``baud``, or 0.01 s when ``baud`` is not given).
    """

    def __init__(self, transport, *, timeout=1.0, retries=3, idle_gap=None, baud=None):
        if not timeout > 0:
            raise ValueError(f"Timeout must be positive, not {timeout!r}")
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"Retry count must be a non-negative integer, not {retries!r}")
        if idle_gap is None:
            idle_gap = IDLE_GAP_BITS / baud if baud else 0.01
        if idle_gap < 0:
            raise ValueError(f"Idle gap must be non-negative, not {idle_gap!r}")
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self.idle_gap = idle_gap
        self.decoder = FrameDecoder()
        self._info = None
        transport.timeout = timeout

    def close(self):
        close = getattr(self.transport, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- requests ---------------------------------------------------------------------------

    def request(self, code, payload=b""):
        """Send one request and return the payload of its ACK.

        Raises :class:`LinkNAK` for a NAK (after the retries for ``BAD_CRC``) and
        :class:`LinkTimeout` for a lost or corrupt response (after the retries, for ``INFO``
        and ``STATUS`` only)."""
        frame = encode_frame(code, payload)
        retried = 0
        while True:
            response, failure = self._exchange(frame)
            if response is not None:
                if response.code == Status.ACK:
                    return response.payload
                if response.code == Status.BAD_CRC and retried < self.retries:
                    retried += 1
                    continue
                raise LinkNAK(response.code, code)
            self._recover()
            if code not in _IDEMPOTENT:
                raise LinkTimeout(f"{_command_name(code)}: {failure}; not resent, as the board "
                                  f"may have carried it out")
            if retried >= self.retries:
                raise LinkTimeout(f"{_command_name(code)}: {failure}, "
                                  f"{retried + 1} attempts")
            retried += 1

    def _exchange(self, frame):
        """Send ``frame``, return ``(response, None)`` or ``(None, reason)``."""
        self.decoder.reset()
        self.transport.write(frame)
        while True:
            data = self.transport.read(self.decoder.wanted())
            if not data:
                return None, f"no response within {self.timeout} s"
            frames = self.decoder.feed(data)
            if frames:
                if not frames[0].crc_ok:
                    return None, "corrupt response (CRC mismatch)"
                return frames[0], None

    def _recover(self):
        """Let the board's parser time out, then drop whatever is still arriving."""
        if self.idle_gap:
            time.sleep(self.idle_gap)
        reset = getattr(self.transport, "reset_input_buffer", None)
        if reset is not None:
            reset()
        self.decoder.reset()

    # -- commands ---------------------------------------------------------------------------

    def info(self):
        """The board's :class:`~boards.protocol.Info` (asked for every time, and kept in
        :attr:`last_info`)."""
        self._info = Info.parse(self.request(Command.INFO))
        return self._info

    @property
    def last_info(self):
        return self._info

    @property
    def max_payload(self):
        """The board's ``max_payload`` (from :meth:`info`, asked for once if not known)."""
        if self._info is None:
            self.info()
        return self._info.max_payload

    def status(self, extra_names=()):
        """``STATUS`` as a dict: the link counters, then ``extra_names`` (see
        :func:`~boards.protocol.parse_status`)."""
        return parse_status(self.request(Command.STATUS), extra_names)

    def write(self, port, records, record_bytes):
        """Offer ``records`` (packed, ``record_bytes`` each) to sink ``port`` in one request;
        return how many records it took (the rest must be sent again later)."""
        records = bytes(records)
        n_records = _count_records(records, record_bytes)
        answer = self.request(Command.WRITE, write_payload(port, records))
        if len(answer) != 2:
            raise LinkError(f"WRITE answer must be 2 bytes, not {len(answer)}")
        accepted, = struct.unpack("<H", answer)
        if accepted > n_records:
            raise LinkError(f"WRITE answer claims {accepted} records taken of {n_records} sent")
        return accepted

    def read(self, port, max_records, record_bytes):
        """Up to ``max_records`` records (packed bytes, ``record_bytes`` each) from source
        ``port``; empty when nothing was ready."""
        _check_record_bytes(record_bytes)
        answer = self.request(Command.READ, read_payload(port, max_records))
        if len(answer) % record_bytes or len(answer) > max_records * record_bytes:
            raise LinkError(f"READ answer of {len(answer)} bytes is not at most {max_records} "
                            f"records of {record_bytes} bytes")
        return answer

    def write_all(self, port, records, record_bytes, *, drain=None, progress=None,
                  max_stalls=1000):
        """Send all ``records`` to sink ``port``, in requests of as many whole records as fit
        in ``max_payload - 1`` bytes, resending whatever a WRITE did not take.

        Whenever a WRITE takes fewer records than offered the core is held up, usually by
        its output: ``drain()`` (if given) is called then to read outputs before the next
        WRITE. After ``max_stalls`` WRITEs in a row that take nothing, raises
        :class:`LinkError`. ``progress`` is a callable given the number of records sent so
        far, or an object with ``update(n)`` (a ``tqdm`` bar) given each increment. Returns
        the number of records sent."""
        records = bytes(records)
        total = _count_records(records, record_bytes)
        per_frame = (self.max_payload - 1) // record_bytes
        if per_frame < 1:
            raise ValueError(f"Records of {record_bytes} bytes do not fit in a payload of "
                             f"{self.max_payload} bytes")
        done = 0
        stalls = 0
        while done < total:
            offered = min(per_frame, total - done)
            chunk = records[done * record_bytes:(done + offered) * record_bytes]
            accepted = self.write(port, chunk, record_bytes)
            done += accepted
            if accepted:
                stalls = 0
                if progress is not None:
                    if hasattr(progress, "update"):
                        progress.update(accepted)
                    else:
                        progress(done)
            else:
                stalls += 1
                if stalls >= max_stalls:
                    raise LinkError(f"Port {port} took no records in {stalls} WRITEs in a row "
                                    f"({done} of {total} sent)")
            if accepted < offered and drain is not None:
                drain()
        return done


def _check_record_bytes(record_bytes):
    if not isinstance(record_bytes, int) or record_bytes < 1:
        raise ValueError(f"Record size must be a positive integer, not {record_bytes!r}")


def _count_records(records, record_bytes):
    _check_record_bytes(record_bytes)
    if len(records) % record_bytes:
        raise ValueError(f"Records must be a whole number of {record_bytes}-byte records, "
                         f"not {len(records)} bytes")
    return len(records) // record_bytes


def open_serial(port, baud, timeout=1.0):
    """A pyserial port for a device path (``/dev/ttyUSB1``) or a pyserial URL
    (``socket://localhost:PORT``, ``loop://``)."""
    import serial
    return serial.serial_for_url(port, baudrate=baud, timeout=timeout)
