"""Reading a source in line-aligned blocks, and decoding a block's text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.exports.dlp.errors import SourceFormatError

if TYPE_CHECKING:
    import io
    from collections.abc import Iterator

BLOCK_BYTES = 256 * 1024  # small enough for a flat profile, big enough to amortise
MAX_LINE_BYTES = 16 * 1024 * 1024  # a "line" longer than this is not a record


def blocks(
    f: io.BufferedReader, start: int, end: int
) -> Iterator[tuple[int, bytes, int]]:
    """``(offset, raw, newlines)`` blocks of ``[start, end)``, each ending with a
    newline; ``newlines`` counts them (``raw.count(b"\\n")``)."""
    f.seek(start)
    pos = start  # file offset of the end of ``carry``
    carry = b""
    lines = 0
    while pos < end:
        data = f.read(min(BLOCK_BYTES, end - pos))
        if not data:
            break
        pos += len(data)
        buf = carry + data if carry else data
        cut = buf.rfind(b"\n") + 1
        if cut == 0:
            if len(buf) > MAX_LINE_BYTES:
                raise SourceFormatError(lines + 1, "line longer than 16 MiB")
            carry = buf
            continue
        newlines = buf.count(b"\n", 0, cut)
        lines += newlines
        yield pos - len(buf), buf[:cut], newlines
        carry = buf[cut:]
    if carry:
        yield pos - len(carry), carry + b"\n", 1  # carry holds no newline


def decode_block(raw: bytes, first_row: int) -> str:
    """The text of a block whose first line is row ``first_row``; UTF-8 or raise."""
    try:
        return raw.decode()
    except UnicodeDecodeError as error:
        row = first_row + raw.count(b"\n", 0, error.start)
        raise SourceFormatError(row, "is not valid UTF-8") from None
