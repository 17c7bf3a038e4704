"""Writing files so that nothing half-written is ever left on disk."""
from __future__ import annotations

import contextlib
import errno
import os
import random
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator

from nfinpaint.cli import UsageError

# Below this many free bytes a failed write is taken for a full disk: torch.save's zip writer
# reports ENOSPC as a RuntimeError ("unexpected pos ...") that has lost the errno.
_NEARLY_FULL = 1 << 20


class FolderUnwritableError(UsageError):
    """A folder that takes no file (read-only, no permission, not a folder): every file after the one
    that failed would fail the same way (a folder run stops at it, as at a full disk)."""


class DiskFullError(UsageError):
    """No space left on the device (or over the quota) while writing a file: one ``error:`` line;
    the half-written file is removed.  ``then`` is what the user does once space is free; a caller
    that knows better (a run that can resume) says so with :meth:`then_instead`."""

    def __init__(self, path: str | os.PathLike, then: str = "run again"):
        self.path, self.then = Path(path), then
        super().__init__(f"disk full: no space left on the device writing {self.path} (or over the quota); "
                         f"nothing of that file was kept: free some space (or choose another folder) and {then}")

    def then_instead(self, then: str) -> "DiskFullError":
        return type(self)(self.path, then)

    def __reduce__(self):        # its arguments are not its message: pickled (a worker's error) by parts
        return type(self), (self.path, self.then)


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


# errors that say why a write failed, and it is not space: never reported as a full disk, even
# where the folder shows no free space (/proc, a full read-only image)
_NOT_SPACE = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
              errno.ENAMETOOLONG}
_FOLDER_WIDE = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR}
_FILE_SYSTEM_WIDE = {errno.ENOENT, errno.EROFS, errno.ENOTDIR}


def _os_errors(exc: BaseException) -> Iterator[OSError]:
    """The OSErrors in ``exc`` and its chain of causes and contexts, outermost first (each once)."""
    seen, chain = set(), exc
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if isinstance(chain, OSError):
            yield chain
        chain = chain.__cause__ or chain.__context__


def disk_full(exc: BaseException, path: Path) -> DiskFullError | None:
    """The :class:`DiskFullError` for an exception raised writing ``path`` when the device is full
    (ENOSPC or EDQUOT anywhere in its chain, or a failed write with almost no space left), else None.
    Call it before removing what was written: that frees the space again."""
    if not isinstance(exc, Exception):       # Ctrl-C, SIGTERM: never a full disk
        return None
    full = False
    for error in _os_errors(exc):
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            full = True
            break
        if error.errno in _NOT_SPACE:
            return None        # a folder one cannot write in (/proc, read-only, no permission): not space
    free = _free_bytes(path.parent)
    if not full and (isinstance(exc, UsageError) or free is None or free >= _NEARLY_FULL):
        return None
    return DiskFullError(path)


def write_failure(exc: BaseException, path: Path, creating: bool = False) -> UsageError | None:
    """The one-line error for an exception raised writing ``path``: :class:`DiskFullError` when the
    device is full (:func:`disk_full`), a :class:`UsageError` with the system's reason when the folder
    cannot be written (it does not exist as one, no permission, read-only), else None.  A
    :class:`FolderUnwritableError` where every file after would fail too: a read-only file system, a
    folder gone, or (``creating``: a new file in the folder failed) no permission in it; not a
    permission on one file (replacing one that another user owns, or that a viewer holds open)."""
    full = disk_full(exc, path)
    if full is not None or isinstance(exc, UsageError) or not isinstance(exc, Exception):
        return full
    for error in _os_errors(exc):
        if error.errno in _NOT_SPACE:
            # the folder's own state (read-only, no permission, gone) fails every file after; a name does not
            wide = _FOLDER_WIDE if creating else _FILE_SYSTEM_WIDE
            kind = FolderUnwritableError if error.errno in wide else UsageError
            return kind(f"cannot write {path}: {os.strerror(error.errno).lower()} "
                        f"(in {path.parent}); choose another folder")
    return None


def save_torch(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)``, whose failed write raises the system's error.  torch's zip writer drops
    it ("unexpected pos ..."): over a disk quota, on a file system far from full, that was no "disk
    full" but a traceback.  After such a failure the file is written again through Python's own file,
    which raises the OSError with its errno (the object is then in memory once, on that path only; a
    failure that is not the write's raises again from torch.save)."""
    import io  # noqa: PLC0415

    import torch  # noqa: PLC0415  (the commands that write no tensors do not import it here)

    try:
        torch.save(obj, path)
    except RuntimeError:
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        _write_bytes(Path(path), buffer.getbuffer())


def damaged_entry(path: str | os.PathLike) -> str | None:
    """The first entry of the zip archive ``path`` (what ``torch.save`` writes) whose data fails its CRC-32,
    or None (also for a file that is no zip: ``torch.load`` says what is wrong with that).  ``torch.load``
    does not check the checksums: a flipped bit in a weight loaded as 3.5e36, silently."""
    import zipfile  # noqa: PLC0415

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError):
        return None
    # torch names the archive's folder after the file it first wrote (a temporary name): the entry within it
    return None if bad is None else bad.split("/", 1)[-1]


def load_torch(path: str | os.PathLike, error: type[Exception], what: str, again: str = "",
               map_location="cpu"):
    """``torch.load(path, weights_only=True)`` of a file a user gave as a ``what`` (a training checkpoint,
    a generator file, ...): an empty file, a damaged entry (:func:`damaged_entry`) or a file torch cannot
    read raises ``error`` in one line, ending with ``again`` (what to do) where the caller does not say it
    itself.  Not torch's own message: it may advise ``weights_only=False``, never safe for a file of
    unknown origin."""
    import torch  # noqa: PLC0415

    then = f"; {again}" if again else ""
    if os.stat(path).st_size == 0:
        raise error(f"{str(path)!r} is empty (0 bytes), not a readable {what}{then}")
    damaged = damaged_entry(path)
    if damaged is not None:
        raise error(f"{str(path)!r} is damaged: its entry {damaged!r} fails its checksum (a bad copy or download, "
                    f"or a failing disk), not a usable {what}{then}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise error(f"{str(path)!r} is not a readable {what} (corrupt, truncated or not written by torch.save; "
                    f"{type(exc).__name__}){then}") from None


def _write_bytes(path: Path, data) -> None:
    with open(path, "wb") as file:
        file.write(data)


@contextlib.contextmanager
def full_disk_reported(path: str | os.PathLike, creating: bool = False) -> Iterator[None]:
    """Turn an OSError raised inside the block into :class:`DiskFullError` when the device is full,
    or a :class:`UsageError` when the folder cannot be written (:func:`write_failure`), with ``path``
    named as the file being written; other errors pass."""
    try:
        yield
    except OSError as exc:
        failure = write_failure(exc, Path(path), creating)
        if failure is None:
            raise
        raise failure from None


def _short(name: str) -> str:
    """At most 64 bytes of ``name``, for a temporary name beside it: a name near the file system's
    255-byte limit, which the commands accept, made the temporary one too long, after all the work."""
    return os.fsencode(name)[:64].decode(errors="ignore")


def _temp_affixes(path: Path) -> tuple[str, str]:
    """What :func:`atomic_path`'s temporary file for ``path`` is named with, before and after mkstemp's
    8 random characters."""
    return f".{_short(path.stem)}.", f"{path.suffix}.tmp{path.suffix}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary file is in the same folder (same file system, so the rename
    is atomic) and keeps the suffix, so writers that infer the format from the
    name (PIL, torch.save) work.  On any error the temporary file is removed.
    """
    path = Path(path)
    prefix, suffix = _temp_affixes(path)
    tmp = None
    try:
        with full_disk_reported(path, creating=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            # named here before it is made, so that the except below removes it whenever an exception
            # lands: a Ctrl-C inside tempfile.mkstemp, after its file was made and before its name came
            # back, left an empty temporary file behind (13 of 600 interrupted folder runs)
            for tmp in temp_names(path.parent, prefix, suffix):
                if create_new(tmp):
                    break
        yield tmp
        _sync(tmp)          # the data on disk before the name: after a power loss, old file or new, never empty
        os.replace(tmp, path)
        _sync(path.parent)  # and the rename itself
    except BaseException as exc:
        failure = write_failure(exc, path)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if failure is not None:
            raise failure from None
        raise


_RANDOM_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_"     # mkstemp's


def temp_names(folder: Path, prefix: str, suffix: str) -> Iterator[Path]:
    """Endless names in ``folder``: ``prefix``, 8 random characters (as mkstemp's), ``suffix``."""
    chooser = random.SystemRandom()
    while True:
        yield folder / f"{prefix}{''.join(chooser.choices(_RANDOM_CHARS, k=8))}{suffix}"


def create_new(path: Path) -> bool:
    """Make ``path`` a new empty file with the mode a plain open() gives (mkstemp's is private, 0600);
    False when it exists already."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
    except FileExistsError:
        return False
    return True


def _sync(path: Path) -> None:
    """fsync a file or folder where the platform allows it (a folder cannot be opened on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")   # TOML and JSON are UTF-8 whatever the locale


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; on success it takes ``path``'s place.

    Whatever ``path`` held before (an earlier run's results) is removed only
    after the new folder is complete, so ``path`` holds one run's files, never a
    mixture; on any error the temporary folder is removed and ``path`` is left as
    it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_short(path.name)}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())   # mkdtemp's folder is private (0700)
    try:
        yield tmp
        old = None
        if path.exists():
            old = tmp.with_name(tmp.name[:-len(".tmp")] + ".old")
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------- folders the tools own

# A folder that one of the commands made holds this file, saying which command: only such a
# folder is ever replaced whole, and data scans skip it (its images are outputs, not data).
MARKER = ".nfinpaint-output"


def write_marker(folder: str | os.PathLike, kind: str) -> Path:
    """Mark ``folder`` as written by the command ``kind`` ("evaluation", "training run")."""
    path = Path(folder) / MARKER
    write_text(path, f"nfinpaint {kind}\n")
    return path


def marker_kind(folder: str | os.PathLike) -> str | None:
    """The command that wrote ``folder`` (its marker's word), or None for a folder of anyone else."""
    path = Path(folder) / MARKER
    try:
        if not path.is_file():
            return None
        text = path.read_text(errors="replace").strip()
    except OSError:
        return None
    return text[len("nfinpaint "):] if text.startswith("nfinpaint ") else None


def overlap(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether folders ``a`` and ``b`` are the same or one holds the other (links resolved)."""
    ra, rb = Path(a).resolve(), Path(b).resolve()
    return ra == rb or ra in rb.parents or rb in ra.parents


# --------------------------------------------------------------------------- temporary files

_TEMP_NAME = re.compile(r"^\..+\.tmp(\.[A-Za-z0-9]+)?$")   # atomic_path's names
_RANDOM_PART = re.compile(r"[a-z0-9_]{8}")                 # mkstemp's, in atomic_path's names


def is_temporary(name: str) -> bool:
    """Whether a file named ``name`` is one of :func:`atomic_path`'s temporary files."""
    return bool(_TEMP_NAME.match(name))


def remove_stale_temps_of(paths: Iterable[str | os.PathLike], older_than: float = 600.0) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left beside ``paths`` when its process was killed
    (kill -9, power loss): those of these files' names (mkstemp's random part between the name's first
    64 bytes and its suffix: ``a.png``'s, not ``a.b.png``'s), unchanged for ``older_than`` seconds.  For
    a folder other processes may write too (a folder run's output): a live write's temporary file is
    seconds old.  Returns what was removed."""
    wanted: dict[Path, dict[str, set[str]]] = {}        # folder -> suffix -> prefixes
    for path in map(Path, paths):
        prefix, suffix = _temp_affixes(path)
        wanted.setdefault(path.parent, {}).setdefault(suffix, set()).add(prefix)
    removed = []
    now = time.time()
    for folder, by_suffix in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if not any(_RANDOM_PART.fullmatch(entry.name[-len(suffix) - 8:-len(suffix)])
                       and entry.name[:-len(suffix) - 8] in prefixes
                       for suffix, prefixes in by_suffix.items() if entry.name.endswith(suffix)):
                continue
            try:
                if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime > older_than:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except OSError:
                pass        # gone meanwhile, or not ours to remove: it stays, as before
    return removed


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files :func:`atomic_path` left in ``folder`` (not its subfolders) when
    its process was killed (kill -9, power loss).  Only for a folder no other process writes
    (a locked run directory).  Returns what was removed."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        if is_temporary(path.name) and path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
