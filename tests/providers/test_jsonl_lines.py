"""Splitting a results stream into JSONL lines: on \\n only, whatever the chunking, long lines whole."""

from __future__ import annotations

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from dashboard.providers.transport import jsonl_lines


class Chunks(httpx.SyncByteStream):
    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks

    def __iter__(self):
        yield from self.chunks


def split(chunks: list[bytes]) -> list[bytes]:
    return list(jsonl_lines(httpx.Response(200, stream=Chunks(chunks))))


def reference(data: bytes) -> list[bytes]:
    return [line.rstrip(b"\r") for line in data.split(b"\n") if line.strip()]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40) | st.sampled_from([b"\n", b"\r\n", b" \n", "\u2028".encode()]), max_size=30))
def test_any_chunking_gives_the_lines_of_the_whole(chunks):
    assert split(chunks) == reference(b"".join(chunks))


def test_a_40_mb_line_arriving_in_64_kib_chunks_comes_out_whole():
    line = b'{"custom_id":"big","result":"' + b"x" * (40 * 1024 * 1024) + b'"}'
    data = b"first\n" + line + b"\r\nlast"
    chunks = [data[i : i + 65536] for i in range(0, len(data), 65536)]
    lines = split(chunks)
    assert [len(item) for item in lines] == [5, len(line), 4]
    assert lines[1] == line
