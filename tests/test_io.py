"""Atomic writes: a failure at any point leaves the previous file and no debris."""

import errno
import os
import stat

import pytest

from agekit._io import DiskFull, atomic_write, atomic_write_text, staged_files


def test_write_creates_folders_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "notes.txt"
    assert atomic_write_text(target, "first ä\n") == target
    assert target.read_text(encoding="utf-8") == "first ä\n"
    atomic_write_text(target, "second\n")
    assert target.read_text(encoding="utf-8") == "second\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["notes.txt"]


def test_a_failure_half_way_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.pt"
    target.write_bytes(b"old and complete")

    def half_then_crash(handle):
        handle.write(b"new but only ha")
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, half_then_crash)
    assert target.read_bytes() == b"old and complete"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_permissions_follow_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        path = atomic_write_text(tmp_path / "shared.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # 0o666 & ~0o027, not mkstemp's private 0o600


def test_staged_files_appear_together_in_order_and_only_when_all_are_complete(tmp_path):
    (tmp_path / "manifest.csv").write_text("old manifest\n")
    (tmp_path / "images.u8").write_bytes(b"old store")
    seen = []
    real_replace = os.replace

    def replace(source, target):  # what a reader would find at each rename
        seen.append((os.path.basename(target), sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))))
        real_replace(source, target)

    with staged_files(tmp_path) as files:
        handle, temporary = files.open("images.u8")
        handle.write(b"new store")
        handle.close()
        files.write_text("images.json", "{}\n")
        files.write("manifest.csv", lambda h: h.write(b"new manifest\n"))
        assert (tmp_path / "manifest.csv").read_text() == "old manifest\n"  # nothing published yet
        assert temporary.parent == tmp_path and temporary.name.startswith(".images.u8.")
        os.replace = replace
        try:
            assert files.publish(remove_first=("manifest.csv",)) == [
                tmp_path / "images.u8", tmp_path / "images.json", tmp_path / "manifest.csv"]
        finally:
            os.replace = real_replace
    assert [name for name, _ in seen] == ["images.u8", "images.json", "manifest.csv"]
    assert "manifest.csv" not in seen[0][1]  # the old manifest went before its store was replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.json", "images.u8", "manifest.csv"]
    assert (tmp_path / "images.u8").read_bytes() == b"new store"
    assert (tmp_path / "manifest.csv").read_text() == "new manifest\n"


def test_a_failing_staged_block_keeps_the_old_files_and_deletes_every_temporary(tmp_path):
    (tmp_path / "manifest.csv").write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with staged_files(tmp_path) as files:
            handle, _ = files.open("images.u8")
            handle.write(b"half a store")  # left open: the failure must close it
            files.write_text("manifest.csv", "new\n")
            raise KeyboardInterrupt
    assert handle.closed
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.csv"]
    assert (tmp_path / "manifest.csv").read_text() == "old\n"


def test_a_full_disk_while_staging_is_one_line_naming_the_folder_and_the_size(tmp_path):
    def full(handle):
        handle.write(b"x")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull) as caught:
        with staged_files(tmp_path, needed=3 * 2**20) as files:
            files.write("images.u8", full)
    message = str(caught.value)
    assert f"no space left in {tmp_path}" in message and "3.0 MiB" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_staged_files_follow_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        with staged_files(tmp_path) as files:
            files.write_text("a.json", "{}")
            handle, _ = files.open("b.u8")
            handle.close()
            files.publish()
    finally:
        os.umask(previous)
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()} == {"a.json": 0o640, "b.u8": 0o640}
