"""Results files of ended batches, rendered once to disk and served from there afterwards.

Once a batch has ended (and is not stalled) its results can no longer change: they are a function
of its plan, its requests and the rendering code. The first request streams the rendered lines as
before while also writing them to a temporary file, renamed into place only once complete (so a
concurrent request never reads a half-written file); later requests stream that file in large
reads. A batch still running, canceling or stalled is never cached.

One file per (account, batch, source), named by a digest of everything its bytes depend on (the
batch's plan, ids and endpoint, and the rendering code): a batch moved in time, edited, deleted and
made again, or re-seeded never finds a stale file. Files live in SIMULATOR_RESULTS_DIR, else a
directory of this user's under the system temp dir; files unused for a while are pruned.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings

from .models import SimBatch

logger = logging.getLogger(__name__)

READ_CHUNK = 1024 * 1024  # a cached file is sent in reads of this many bytes
PRUNE_AFTER_SECONDS = 3600  # files not served for this long are removed when a new one is written
_CODE_FILES = (
    "anthropic_api.py",
    "openai_api.py",
    "azure_openai_api.py",
    "gemini_api.py",
    "progression.py",
    "models.py",
    "results_cache.py",
)


def results_dir() -> Path:
    configured = getattr(settings, "SIMULATOR_RESULTS_DIR", "")
    if configured:
        return Path(configured)
    return Path(tempfile.gettempdir()) / f"batch-simulator-results-{os.getuid()}"


def is_final(batch: SimBatch, ended: bool) -> bool:
    """Whether the batch's results can no longer change: it has ended and is not stalled."""
    return ended and batch.stalled_at is None


@functools.cache
def _code_digest() -> str:
    """The rendering code's own digest: a changed renderer never serves what an older one wrote."""
    digest = hashlib.blake2b(digest_size=16)
    here = Path(__file__).resolve().parent
    for name in _CODE_FILES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def cache_path(batch: SimBatch, source: str) -> Path:
    fields = (
        batch.pk,
        batch.account_id,
        batch.public_id,
        batch.endpoint,
        batch.total,
        dataclasses.astuple(batch.plan()),
        _code_digest(),
    )
    digest = hashlib.blake2b(repr(fields).encode(), digest_size=16).hexdigest()
    return results_dir() / f"{batch.account_id}-{batch.pk}-{source}-{digest}.jsonl"


def _prepared_dir() -> Path:
    directory = results_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not _ours(directory):
        raise PermissionError(f"{directory} is not a directory of this user's")
    return directory


def _ours(directory: Path) -> bool:
    """Whether `directory` is a real directory of this user's (not one another user made in a shared /tmp)."""
    try:
        status = directory.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(status.st_mode) and status.st_uid == os.getuid()


class FileChunks:
    """An open file read in READ_CHUNK pieces; closed at its end or when the response is closed."""

    def __init__(self, file) -> None:
        self.file = file

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk = self.file.read(READ_CHUNK)
        if not chunk:
            self.file.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        self.file.close()


def _open_cached(path: Path):
    try:
        file = path.open("rb")
    except OSError:
        return None
    try:
        os.utime(file.fileno())  # served: not pruned for a while
    except OSError:
        pass
    return file


def _prune(directory: Path, keep: Path) -> None:
    """Other versions of `keep`'s (account, batch, source), and any file unused for PRUNE_AFTER_SECONDS."""
    prefix = keep.name.rsplit("-", 1)[0] + "-"
    old = time.time() - PRUNE_AFTER_SECONDS
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.name == keep.name:
            continue
        try:
            if (entry.name.startswith(prefix) and entry.name.endswith(".jsonl")) or entry.stat().st_mtime < old:
                os.unlink(entry.path)
        except OSError:
            pass


def _rendering(chunks: Iterator[bytes], path: Path) -> Iterator[bytes]:
    """`chunks` passed on as they come, also written to a temporary file renamed to `path` once all
    were written; a render cut short (the client gone, an error) leaves nothing behind."""
    temp = None
    try:
        directory = _prepared_dir()
        fd, name = tempfile.mkstemp(dir=directory, prefix=".render-", suffix=".tmp")
        temp = (os.fdopen(fd, "wb"), name)
    except OSError as error:
        logger.warning("simulator results cache: cannot write to %s: %s", results_dir(), error)
    complete = False
    try:
        for chunk in chunks:
            if temp is not None:
                try:
                    temp[0].write(chunk)
                except OSError as error:
                    logger.warning("simulator results cache: writing %s failed: %s", temp[1], error)
                    _discard(temp)
                    temp = None
            yield chunk
        complete = True
    finally:
        if temp is not None:
            if complete:
                try:
                    temp[0].close()
                    os.replace(temp[1], path)
                    temp = None
                    _prune(path.parent, path)
                except OSError as error:
                    logger.warning("simulator results cache: keeping %s failed: %s", path, error)
            if temp is not None:
                _discard(temp)


def _discard(temp) -> None:
    file, name = temp
    try:
        file.close()
    except OSError:
        pass
    try:
        os.unlink(name)
    except OSError:
        pass


def results_chunks(batch: SimBatch, source: str, *, final: bool, render: Callable[[], Iterator[bytes]]):
    """The results file's bytes in chunks: from its cache file if there is one, else rendered (and,
    if the batch is final, kept as that file). `render()` makes the rendered chunks."""
    if not final:
        return render()
    path = cache_path(batch, source)
    file = _open_cached(path) if _ours(path.parent) else None
    if file is not None:
        return FileChunks(file)
    return _rendering(render(), path)


def results_size(batch: SimBatch, source: str, *, final: bool, render: Callable[[], Iterator[bytes]]) -> int:
    """The results file's length in bytes (rendering it into the cache, if final and not there yet)."""
    if final and _ours(results_dir()):
        try:
            return cache_path(batch, source).stat().st_size
        except OSError:
            pass
    chunks = results_chunks(batch, source, final=final, render=render)
    try:
        return sum(len(chunk) for chunk in chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def forget(batches: list[tuple[int, int]]) -> None:
    """Remove the cache files of these (account pk, batch pk): the batches are gone."""
    directory = results_dir()
    for account_pk, batch_pk in batches:
        for path in directory.glob(f"{account_pk}-{batch_pk}-*.jsonl"):
            try:
                path.unlink()
            except OSError:
                pass
