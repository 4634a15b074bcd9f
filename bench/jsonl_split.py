"""How long one 40 MB result line takes to split out of a stream of 64 KiB chunks.

Compares the dashboard's jsonl_lines with the way it used to do it (re-joining the unfinished line
for every chunk), in the same run:

    .venv/bin/python bench/jsonl_split.py
    .venv/bin/python bench/jsonl_split.py --size-mb 1     # a smaller line (tests/bench: that it runs)
"""

from __future__ import annotations

import argparse
import time

import httpx

from dashboard.providers.transport import jsonl_lines

SIZE_MB = 40
CHUNK = 65536


class Chunks(httpx.SyncByteStream):
    def __init__(self, chunks: list[bytes]):
        self.chunks = chunks

    def __iter__(self):
        yield from self.chunks


def rejoining(response: httpx.Response):
    pending = b""
    for chunk in response.iter_bytes():
        *lines, pending = (pending + chunk).split(b"\n")
        yield from (line.rstrip(b"\r") for line in lines if line.strip())
    if pending.strip():
        yield pending.rstrip(b"\r")


def timed(split, chunks: list[bytes], size_mb: int) -> float:
    started = time.perf_counter()
    lines = list(split(httpx.Response(200, stream=Chunks(chunks))))
    elapsed = time.perf_counter() - started
    assert len(lines) == 2 and len(lines[0]) > size_mb * 1024 * 1024
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=SIZE_MB, help="the one long line's size")
    size_mb = parser.parse_args().size_mb
    data = b'{"custom_id":"big","result":"' + b"x" * (size_mb * 1024 * 1024) + b'"}\n{"custom_id":"next"}\n'
    chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
    ours = timed(jsonl_lines, chunks, size_mb)
    before = timed(rejoining, chunks, size_mb)
    print(f"{'splitter':<28} {'seconds':>8} {'vs re-joining':>14}")
    print(f"{'re-joining (before)':<28} {before:>8.3f} {1.0:>13.2f}x")
    print(f"{'jsonl_lines (now)':<28} {ours:>8.3f} {ours / before:>13.4f}x")
    print(f"(one {size_mb} MB line in {len(chunks)} chunks of {CHUNK // 1024} KiB)")


if __name__ == "__main__":
    main()
