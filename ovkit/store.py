"""Stage cache: artifacts keyed by stage name, parameters and upstream artifacts.

An artifact is a folder ``artifacts/<stage>/<key>/`` holding the stage's files and a
``meta.json``. The key hashes the stage name, its code version, its parameters and the keys of
the artifacts it was built from, so changing any of them builds a new artifact and a downstream
stage is rebuilt whenever an upstream one changes. A stage is built in a temporary folder and
renamed into place only when complete: an interrupted build leaves no folder a reader would take.

Several processes may ask for one stage at once (a sweep's points share the cache): a file lock per
key (``.lock-<key>`` beside the artifact) lets one of them build while the others wait and then read
its result, so a stage is built once and a finished artifact is never replaced under a reader.

``meta.json`` records the size and BLAKE2 hash of every file the build wrote; reading an artifact
checks them (the hash once per process and file), so a truncated or damaged file is never loaded:
the stage is rebuilt, with a line saying why. A ``meta.json`` without that record, or naming another
stage or key than its folder's (a copied or hand-edited folder), counts as damaged the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import dataclasses
import functools
import hashlib
import json
import mmap
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from . import resources
from .paths import artifacts_dir

META = "meta.json"
FOREIGN_BUILD_AGE_S = 24 * 3600  # clean_partial: another host's build folder untouched this long is left over


def release_pages(*arrays) -> None:
    """Drop the pages of memory-mapped arrays from this process's resident set (Linux).

    A full pass over a memory-mapped artifact (the catalogue's pixels, 2.6 GB at the default profile;
    the feature maps, 2.1 GB) leaves every page mapped in the process, so its RSS grows by the file's
    size although the kernel could drop them. ``MADV_DONTNEED`` unmaps them; the data stays in the
    file (written pages of a shared map included), and a later read maps it again. Only read-only
    and shared writable maps are released (a copy-on-write map would lose its edits); other arrays
    are ignored.
    """
    for array in arrays:
        memmap, base = None, array
        while base is not None and not isinstance(base, mmap.mmap):
            if isinstance(base, np.memmap) and memmap is None:
                memmap = base
            base = getattr(base, "base", None)
        if base is None or memmap is None or memmap.mode == "c" or not hasattr(mmap, "MADV_DONTNEED"):
            continue
        base.madvise(mmap.MADV_DONTNEED)  # a shared map's written pages are already the file's


def trim_heap() -> bool:
    """Give the heap's free memory back to the OS (glibc ``malloc_trim(0)``); False where there is none.

    The kernels run with a 4 GB trim threshold (:data:`ovkit.runner.MALLOC_TUNABLES`) so that a loop's
    batches reuse their memory instead of faulting it in again; the price is that what a finished stage
    freed stays in the process. A stage build is the place to return it: at the default profile the
    augmented head's pass over every view left 1.24 GB of anonymous memory, 0.54 GB after a trim.
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim else False


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, loaded once; None where the C library has none (macOS, musl)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class DamagedArtifact(RuntimeError):
    """A cached artifact's files do not match what its build recorded."""


@dataclass(frozen=True)
class Artifact:
    """A finished stage output: its folder, key and metadata."""

    stage: str
    key: str
    path: Path
    meta: dict
    fresh: bool = False  # built by this call (False: read from the cache)

    def __truediv__(self, name: str) -> Path:
        return self.path / name


def _canonical(value):
    """JSON-able form of a parameter value (paths and tuples included), for stable hashing."""
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def stage_key(stage: str, params: dict, upstream: Iterable[Artifact] = (), version: int = 1) -> str:
    """Hash of everything a stage's output depends on (16 hex characters)."""
    blob = json.dumps(
        {
            "stage": stage,
            "version": version,
            "params": _canonical(params),
            "upstream": sorted(f"{a.stage}:{a.key}" for a in upstream),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _file_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _record_files(folder: Path) -> dict:
    """Size and hash of every file a build wrote (relative path → record)."""
    return {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "blake2b": _file_hash(p)}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != META}


_VERIFIED: set = set()  # (path, size, mtime) of files whose hash was checked by this process


def _stat_key(path: Path) -> tuple:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def verify(artifact: Artifact) -> None:
    """Raise :class:`DamagedArtifact` naming the first file that is missing, resized or changed."""
    for name, expected in artifact.meta["files"].items():
        path = artifact.path / name
        if not path.is_file():
            raise DamagedArtifact(f"{path} is missing")
        seen = _stat_key(path)
        if seen[1] != expected["bytes"]:
            raise DamagedArtifact(f"{path} has {seen[1]} bytes, the build wrote {expected['bytes']}")
        if seen not in _VERIFIED:
            if _file_hash(path) != expected["blake2b"]:
                raise DamagedArtifact(f"{path} changed after the build (its hash differs)")
            _VERIFIED.add(seen)


def _read(path: Path) -> Artifact | None:
    """The artifact in ``path``; None when there is none; DamagedArtifact when it is damaged."""
    meta_file = path / META
    if not meta_file.exists():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        artifact = Artifact(stage=meta["stage"], key=meta["key"], path=path, meta=meta)
    except (ValueError, KeyError, TypeError) as err:
        raise DamagedArtifact(f"{meta_file} is unreadable ({err!r})") from err
    _check_meta(artifact, meta_file)
    verify(artifact)
    return artifact


def _check_meta(artifact: Artifact, meta_file: Path) -> None:
    """A meta.json that is not its folder's own, or records no files to verify, is not trusted:
    without the record a half-copied artifact would pass, and another key's would be wrong data."""
    if not artifact.path.as_posix().endswith(f"/{artifact.stage}/{artifact.key}"):  # <stage>/<key>
        raise DamagedArtifact(f"{meta_file} names stage {artifact.stage!r} key {artifact.key!r}, not its "
                              "folder's (a copied or renamed folder)")
    files = artifact.meta.get("files")
    if not isinstance(files, dict):
        raise DamagedArtifact(f"{meta_file} records no files to check the artifact against")
    for name, record in files.items():
        if Path(name).is_absolute() or ".." in Path(name).parts or not (
                isinstance(record, dict) and isinstance(record.get("bytes"), int)
                and isinstance(record.get("blake2b"), str)):
            raise DamagedArtifact(f"{meta_file} has a bad record for file {name!r}: {record!r}")


def _read_or_rebuild(path: Path) -> Artifact | None:
    """The cached artifact, or None (build it) when missing or damaged; damage is reported."""
    try:
        return _read(path)
    except DamagedArtifact as err:
        print(f"ovkit: the cached {path.parent.name} stage {path.name} is damaged ({err}); rebuilding it")
        return None


def lookup(stage: str, params: dict, upstream: Iterable[Artifact] = (), version: int = 1):
    """The cached artifact for these inputs, or None."""
    key = stage_key(stage, params, upstream, version)
    return _read_or_rebuild(artifacts_dir() / stage / key)


def cached(
    stage: str,
    params: dict,
    build: Callable[[Path], dict | None],
    upstream: Iterable[Artifact] = (),
    version: int = 1,
    rebuild: bool = False,
) -> Artifact:
    """Return the artifact for ``stage`` with these inputs, building it on a miss.

    Args:
        stage: stage name, e.g. ``"catalogue"``.
        params: everything (JSON-able) the output depends on.
        build: ``build(folder)`` writes the stage's files into ``folder`` and may return a dict
            of extra metadata (counts, timings) stored in ``meta.json``.
        upstream: artifacts this stage reads; their keys enter this stage's key.
        version: bump when the stage's code changes what it writes.
        rebuild: build again even if cached (the old artifact is replaced only on success).
    Returns:
        The finished :class:`Artifact`.
    """
    upstream = list(upstream)
    key = stage_key(stage, params, upstream, version)
    final = artifacts_dir() / stage / key
    if not rebuild and (found := _read_or_rebuild(final)) is not None:
        return found
    final.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(final):
        if not rebuild and (found := _read_or_rebuild(final)) is not None:  # another process built it
            return found
        return _build(stage, key, params, build, upstream, version, final)


@contextlib.contextmanager
def _build_lock(final: Path):
    """Hold ``.lock-<key>`` while building; say so when another process holds it (its build runs)."""
    lock = FileLock(final.parent / f".lock-{final.name}")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"ovkit: another process is building the {final.parent.name} stage {final.name}; waiting")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _build(stage, key, params, build, upstream, version, final: Path) -> Artifact:
    """Build into a temporary folder and rename it into place (replacing an old copy on rebuild)."""
    tmp = final.parent / f".tmp-{key}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    try:
        with resources.measure(stage, key) as usage:
            extra = build(tmp) or {}
        trim_heap()  # what the build freed goes back to the OS, not only to this process's heap
        meta = {
            "stage": stage,
            "key": key,
            "version": version,
            "params": _canonical(params),
            "upstream": {a.stage: a.key for a in upstream},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "build_seconds": usage["wall_s"],
            "build_resources": usage,
            **_canonical(extra),
            "files": _record_files(tmp),
        }
        (tmp / META).write_text(json.dumps(meta, indent=1))
        if final.exists():  # rebuild=True: the old copy goes only once the new one is complete
            old = final.parent / f".old-{key}-{uuid.uuid4().hex[:6]}"
            os.rename(final, old)
            os.rename(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _VERIFIED.update(_stat_key(final / name) for name in meta["files"])  # hashed just now: no second pass
    return dataclasses.replace(_read(final), fresh=True)


def _host() -> str:
    """This machine's name as build folders carry it (a PID means something only on its own host)."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64] or "unknown"


def _build_owner(folder: Path) -> tuple[str, int] | None:
    """(host, pid) of a ``.tmp-<key>-<host>-<pid>-<id>`` build folder; None for any other name."""
    try:
        host, pid, _ = folder.name.removeprefix(".tmp-").split("-", 1)[1].rsplit("-", 2)
        return host, int(pid)
    except (IndexError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:  # 0 and negative numbers would signal process groups
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # it exists, owned by another user
        return True
    return True


def _last_touched(folder: Path) -> float:
    """Newest modification time of the folder and what is in it (a running build writes files)."""
    try:
        return max([folder.stat().st_mtime] + [p.lstat().st_mtime for p in folder.rglob("*")])
    except OSError:  # it changed while looked at: someone is working on it
        return time.time()


def _abandoned(folder: Path, max_age_s: float) -> bool:
    """Whether a build folder's builder is gone: on this host, when its process has ended; from
    another host (or of an older name without a host) no process can be asked, so only when the
    folder has been untouched for ``max_age_s``."""
    owner = _build_owner(folder)
    if owner is not None and owner[0] == _host():
        return not _pid_alive(owner[1])
    return time.time() - _last_touched(folder) > max_age_s


def clean_partial(max_age_s: float = FOREIGN_BUILD_AGE_S) -> int:
    """Remove leftovers of interrupted builds, never a build still running; returns how many.

    The cache may be shared by several hosts (a Ray cluster's sweep): a build folder records the
    host and PID of its builder, and whether that process runs is asked only on its own host. A
    build folder from another host (or named before hosts were recorded) is removed only once
    nothing in it changed for ``max_age_s``: 24 hours by default, far longer than a stage build of
    the kit takes (pass more for longer builds). ``.old-*`` copies, which a finished rebuild was
    about to delete, always go.
    """
    root = artifacts_dir()
    removed = 0
    for leftover in list(root.glob("*/.tmp-*")) + list(root.glob("*/.old-*")):
        if leftover.name.startswith(".tmp-") and not _abandoned(leftover, max_age_s):
            continue
        shutil.rmtree(leftover, ignore_errors=True)
        removed += 1
    return removed
