"""Atomic writes: all or nothing, and ordinary file permissions."""
import errno
import os
import stat
import time

import pytest

from nfinpaint.cli import UsageError, check_output_folder
from nfinpaint.files import DiskFullError, atomic_path, full_disk_reported, write_text


def test_atomic_write_replaces_and_uses_umask_mode(tmp_path):
    target = tmp_path / "sub" / "results.md"
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["results.md"]


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "model.pt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_folder_replaces_the_old_folder_whole(tmp_path):
    from nfinpaint.files import atomic_folder

    out = tmp_path / "results"
    out.mkdir()
    (out / "old.txt").write_text("earlier run")
    with atomic_folder(out) as folder:
        (folder / "new.txt").write_text("this run")
        assert (out / "old.txt").exists()           # untouched until the new folder is complete
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["results"]   # no temporary folder left


def test_atomic_folder_keeps_the_old_folder_on_error(tmp_path):
    from nfinpaint.files import atomic_folder

    out = tmp_path / "results"
    out.mkdir()
    (out / "old.txt").write_text("earlier run")
    with pytest.raises(RuntimeError):
        with atomic_folder(out) as folder:
            (folder / "new.txt").write_text("half")
            raise RuntimeError("failed mid-way")
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["results"]


def test_stale_temporary_files_are_found_by_name(tmp_path):
    from nfinpaint.files import atomic_path, remove_stale_temps

    kept = ["step_0000002.pt", "notes.tmp.txt", ".hidden"]
    for name in kept:
        (tmp_path / name).write_text("x")
    with atomic_path(tmp_path / "generator.pt") as tmp:
        stale = tmp.name
        tmp.write_text("done")
    (tmp_path / stale).write_text("half")      # the same name, as a writer killed by kill -9 leaves it
    assert [p.name for p in remove_stale_temps(tmp_path)] == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["generator.pt"])


def test_stale_temporary_files_of_given_names_are_removed_only_when_old(tmp_path):
    """A folder run's output folder is not locked: only the temporary files of its own outputs' names go,
    and only those no live write could own (unchanged for older_than seconds)."""
    from nfinpaint.files import atomic_path, is_temporary, remove_stale_temps_of

    def left_by_a_killed_write(target):
        with atomic_path(target) as tmp:
            name = tmp.name
            tmp.write_text("done")
        (tmp_path / name).write_text("half")
        return tmp_path / name

    old_ours, fresh_ours, old_other, old_longer = (left_by_a_killed_write(tmp_path / n)
                                                   for n in ("a.png", "b.png", "c.png", "a.b.png"))
    hour_ago = time.time() - 3600
    for path in (old_ours, old_other, old_longer):
        os.utime(path, (hour_ago, hour_ago))
    assert [p.name for p in remove_stale_temps_of([tmp_path / "a.png", tmp_path / "b.png"], older_than=600)] \
        == [old_ours.name]
    # a.b.png's temporary file starts and ends as a.png's would: it is not a.png's
    assert fresh_ours.exists() and old_other.exists() and old_longer.exists() and not old_ours.exists()
    assert sum(is_temporary(p.name) for p in tmp_path.iterdir()) == 3


class _FullFile:
    """A file object whose writes fail the way a full disk makes them fail."""

    def write(self, text):
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        pass


def test_a_full_disk_while_logging_metrics_is_one_line(tmp_path):
    from nfinpaint.run_dir import MetricsLog  # noqa: PLC0415

    log = MetricsLog(tmp_path, None, tensorboard=False)
    log.file.close()
    log.file = _FullFile()
    with pytest.raises(DiskFullError, match=r"^disk full: .*metrics\.jsonl"):
        log.write({"kind": "train", "step": 1})


def test_a_full_disk_creating_the_temporary_file_is_one_line(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("nfinpaint.files.create_new", full)
    with pytest.raises(DiskFullError, match=r"^disk full: .*out\.txt"):
        write_text(tmp_path / "out.txt", "x")
    assert list(tmp_path.iterdir()) == []


def _interrupted_once_made(monkeypatch, marker: str) -> None:
    """Ctrl-C right after the system makes a file whose name holds ``marker``, before any caller sees it
    (inside tempfile.mkstemp, where 13 of 600 interrupted folder runs were stopped)."""
    real = os.open

    def open_then_interrupted(path, *args, **kwargs):
        fd = real(path, *args, **kwargs)
        if marker in os.fspath(path):
            os.close(fd)
            raise KeyboardInterrupt
        return fd

    monkeypatch.setattr(os, "open", open_then_interrupted)


def test_a_ctrl_c_as_the_temporary_file_is_made_leaves_nothing(tmp_path, monkeypatch):
    _interrupted_once_made(monkeypatch, ".tmp")
    with pytest.raises(KeyboardInterrupt):
        write_text(tmp_path / "out.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_a_ctrl_c_as_the_write_probe_is_made_leaves_nothing(tmp_path, monkeypatch):
    _interrupted_once_made(monkeypatch, "nfinpaint-probe")
    with pytest.raises(KeyboardInterrupt):
        check_output_folder(tmp_path, "-o")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_error_says_what_to_do_next_and_a_caller_can_say_it_better(tmp_path):
    import pickle  # noqa: PLC0415

    error = DiskFullError(tmp_path / "out.txt")
    assert str(error).endswith("free some space (or choose another folder) and run again"), error
    resumable = error.then_instead("run again with --resume RUN")
    assert str(resumable).endswith("and run again with --resume RUN") and str(tmp_path / "out.txt") in str(resumable)
    assert str(resumable).count("run again") == 1 and isinstance(resumable, DiskFullError)
    assert str(pickle.loads(pickle.dumps(resumable))) == str(resumable)   # as a worker process hands it back


@pytest.mark.parametrize("error", [ValueError("not a disk error"), OSError(errno.EIO, "Input/output error")])
def test_other_errors_pass_through_unchanged(tmp_path, error):
    with pytest.raises(type(error)) as raised, full_disk_reported(tmp_path / "out.txt"):
        raise error
    assert raised.value is error


@pytest.mark.parametrize("code, reason", [(errno.EACCES, "permission denied"), (errno.ENOENT, "no such file"),
                                          (errno.EROFS, "read-only file system")])
def test_a_folder_that_cannot_be_written_is_one_line_and_never_a_full_disk(tmp_path, monkeypatch, code, reason):
    """/proc shows no free space and refuses new files (ENOENT): that was reported as a full disk."""
    import nfinpaint.files as files  # noqa: PLC0415

    monkeypatch.setattr(files, "_free_bytes", lambda folder: 0)
    with pytest.raises(UsageError) as raised, full_disk_reported(tmp_path / "out.txt"):
        raise OSError(code, os.strerror(code))
    assert not isinstance(raised.value, DiskFullError)
    assert str(raised.value).startswith(f"cannot write {tmp_path / 'out.txt'}: {reason}")

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("nfinpaint.files.create_new", refuse)
    with pytest.raises(UsageError, match="^cannot write .*out.txt: " + reason):
        write_text(tmp_path / "out.txt", "x")


def test_a_name_at_the_file_systems_limit_is_written(tmp_path):
    """The temporary name beside it (".STEM.XXXXXXXX.pt.tmp.pt") went past 255 bytes for names the
    commands accept, and the write failed after all the work."""
    from nfinpaint.files import atomic_folder  # noqa: PLC0415

    name = "é" * 100 + "n" * 48 + ".pt"             # 251 bytes, a multi-byte character at the cut
    with atomic_path(tmp_path / name) as tmp:
        tmp.write_text("done")
    assert (tmp_path / name).read_text() == "done"
    folder = "f" * 250
    with atomic_folder(tmp_path / folder) as tmp:
        (tmp / "x").write_text("x")
    assert (tmp_path / folder / "x").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, folder])


def test_a_failed_torch_save_raises_the_systems_error(tmp_path):
    """torch.save's zip writer drops the errno of a failed write ("unexpected pos ..."): under a file
    size limit (as under a disk quota, whose file system is far from full) save_torch's second write,
    through Python's own file, raises it, so that the commands can name the cause."""
    import subprocess
    import sys

    code = (
        "import errno, resource, signal, sys, torch\n"
        "from nfinpaint.files import save_torch\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "try:\n"
        "    torch.save({'w': torch.zeros(4096)}, sys.argv[1] + '.plain')\n"
        "except OSError:\n"
        "    print('plain: OSError')\n"
        "except RuntimeError:\n"
        "    print('plain: RuntimeError')\n"
        "try:\n"
        "    save_torch({'w': torch.zeros(4096)}, sys.argv[1])\n"
        "except OSError as exc:\n"
        "    print('save_torch:', errno.errorcode[exc.errno])\n")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "w.pt")], capture_output=True, text=True,
                            timeout=300)
    assert result.stdout.split("\n")[:2] == ["plain: RuntimeError", "save_torch: EFBIG"], result.stderr
