"""Atomic writes: a failure at any point leaves the previous file and no debris."""

import os
import stat

import pytest

from agekit._io import atomic_write, atomic_write_text


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
