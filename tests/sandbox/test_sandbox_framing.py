"""The executor's frames (sandbox/framing.py), read back the two ways the server and the executor
read them: from a raw descriptor and from an asyncio stream."""

from __future__ import annotations

import asyncio
import os

import pytest

from diffucoder.sandbox import framing

FRAMES = [{"seq": 1, "code": "print('é')\n" * 3}, [1, 2.5, None, True], "x" * 300_000, {}]


def test_frames_round_trip_through_a_pipe_and_end_cleanly():
    read_end, write_end = os.pipe()
    try:
        # a frame larger than the pipe's buffer needs a reader: one in a forked child writes them all
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            for frame in FRAMES:
                framing.write(write_end, frame)
            os._exit(0)
        os.close(write_end)
        write_end = -1
        assert [framing.read(read_end) for _ in FRAMES] == FRAMES
        assert framing.read(read_end) is None  # end of file between frames
        os.waitpid(pid, 0)
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def test_a_frame_cut_short_reads_as_end_of_file_and_garbage_is_named():
    data = framing.encode({"seq": 7})
    read_end, write_end = os.pipe()
    os.write(write_end, data[:-2])
    os.close(write_end)
    assert framing.read(read_end) is None
    os.close(read_end)

    read_end, write_end = os.pipe()
    os.write(write_end, framing.HEADER.pack(5) + b"{nope")
    os.close(write_end)
    with pytest.raises(framing.FrameError, match="5 bytes is not JSON"):
        framing.read(read_end)
    os.close(read_end)


def test_the_asyncio_reader_reads_what_the_descriptor_writer_wrote():
    async def read_all(data: bytes) -> list:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        frames = []
        while (frame := await framing.read_stream(reader)) is not None:
            frames.append(frame)
        return frames

    encoded = b"".join(framing.encode(f) for f in FRAMES)
    assert asyncio.run(read_all(encoded)) == FRAMES
    assert asyncio.run(read_all(encoded[:-1])) == FRAMES[:-1]  # the cut frame is end of file
