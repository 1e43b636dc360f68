"""The length-prefixed JSON frames the server and each executor slot exchange over the slot's pipes.

A frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON. The executor reads and
writes raw descriptors (it is a small process that forks every job, so it stays off asyncio); the
pool reads the executor's stdout as an asyncio stream. Both ends use this one definition.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

HEADER = struct.Struct(">I")


class FrameError(ValueError):
    """A frame that does not decode (truncated or not JSON): the peer is broken, not the job."""


def encode(obj: Any) -> bytes:
    body = json.dumps(obj).encode()
    return HEADER.pack(len(body)) + body


def write(fd: int, obj: Any) -> None:
    data = memoryview(encode(obj))
    while data:
        data = data[os.write(fd, data) :]


def read(fd: int) -> Any | None:
    """The next frame from ``fd``, or None at end of file (also when it ends inside a frame)."""
    header = _read_exact(fd, HEADER.size)
    if header is None:
        return None
    body = _read_exact(fd, HEADER.unpack(header)[0])
    return None if body is None else _decode(body)


async def read_stream(reader: Any) -> Any | None:
    """The next frame from an ``asyncio.StreamReader``, or None at end of file (also inside a frame).

    asyncio is not imported here: the executor imports this module, and every module it holds is
    mapped into each job's fork (``asyncio.IncompleteReadError`` is an ``EOFError``)."""
    try:
        header = await reader.readexactly(HEADER.size)
        body = await reader.readexactly(HEADER.unpack(header)[0])
    except EOFError:
        return None
    return _decode(body)


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise FrameError(f"a frame of {len(body)} bytes is not JSON: {exc}") from None


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
