"""The content-addressed attachments store: one file per digest, written atomically, never a path from input."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from pathlib import Path

import pytest

from connector.pull import attachments
from connector.pull.attachments import AttachmentStore
from connector.pull.national import InvalidSubmission

DRAWING = b"%PDF-1.4\n" + "Bản vẽ thiết kế kỹ thuật — Bộ Xây dựng".encode() * 500


def sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_put_writes_the_content_under_its_digest(tmp_path: Path, umask_022: None) -> None:
    directory = tmp_path / "var" / "attachments"
    store = AttachmentStore(directory)
    path = store.put(DRAWING)
    assert path == directory / sha(DRAWING)
    assert path.read_bytes() == DRAWING
    assert stat.S_IMODE(directory.stat().st_mode) == 0o750
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(directory) == [sha(DRAWING)]  # no temporary file left behind


def test_put_checks_the_declared_digest(tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path)
    assert store.put(DRAWING, sha256=sha(DRAWING).upper()) == tmp_path / sha(DRAWING)
    with pytest.raises(InvalidSubmission) as caught:
        store.put(b"another drawing", sha256=sha(DRAWING))
    assert (caught.value.reason, caught.value.field) == ("file_sha256_mismatch", "sha256")
    assert os.listdir(tmp_path) == [sha(DRAWING)]
    with pytest.raises(InvalidSubmission) as caught:
        store.put(DRAWING, sha256="../../etc/passwd")
    assert caught.value.reason == "bad_sha256"


def test_the_same_content_is_not_written_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = AttachmentStore(tmp_path)
    first = store.put(DRAWING)
    before = first.stat()

    def no_replace(*args: object) -> None:
        raise AssertionError("rewrote a file already stored")

    monkeypatch.setattr(attachments.os, "replace", no_replace)
    assert store.put(DRAWING, sha256=sha(DRAWING)) == first
    assert first.stat().st_ino == before.st_ino


def test_a_torn_copy_is_replaced(tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path)
    store.path_for(sha(DRAWING)).write_bytes(DRAWING[:100])  # e.g. copied by hand and cut short
    path = store.put(DRAWING)
    assert path.read_bytes() == DRAWING
    assert store.verify(sha(DRAWING))


def test_an_empty_file_is_stored(tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path)
    assert store.put(b"").read_bytes() == b""
    assert store.verify(sha(b""))


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = AttachmentStore(tmp_path)

    def disk_full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(attachments.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        store.put(DRAWING)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "digest",
    ["../" + "0" * 61, "/etc/passwd", "0" * 63, "0" * 65, "g" * 64, "0" * 63 + "/", "0" * 63 + "\n", "",
     "0" * 32 + "/" + "0" * 31, "０" * 64],  # the last: full-width digits
)
def test_path_for_refuses_anything_but_a_digest(tmp_path: Path, digest: str) -> None:
    with pytest.raises(InvalidSubmission) as caught:
        AttachmentStore(tmp_path).path_for(digest)
    assert (caught.value.reason, caught.value.field) == ("bad_sha256", "sha256")


def test_path_for_is_the_lower_case_digest_inside_the_directory(tmp_path: Path) -> None:
    path = AttachmentStore(tmp_path).path_for(sha(DRAWING).upper())
    assert path.parent == tmp_path
    assert path.name == sha(DRAWING)


def test_verify_rehashes_the_file(tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path)
    path = store.put(DRAWING)
    assert store.verify(sha(DRAWING))
    assert store.verify(sha(DRAWING).upper())
    assert not store.verify(sha(b"never stored"))
    path.write_bytes(bytes([DRAWING[0] ^ 1]) + DRAWING[1:])  # same size, one bit flipped
    assert not store.verify(sha(DRAWING))
    with pytest.raises(InvalidSubmission):
        store.verify("..")


def test_verify_of_a_missing_directory_is_false(tmp_path: Path) -> None:
    assert not AttachmentStore(tmp_path / "nowhere").verify(sha(DRAWING))


def test_concurrent_puts_of_the_same_content_agree(tmp_path: Path) -> None:
    store = AttachmentStore(tmp_path)
    paths: list[Path] = []
    errors: list[BaseException] = []

    def put() -> None:
        try:
            paths.append(store.put(DRAWING, sha256=sha(DRAWING)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(paths) == {tmp_path / sha(DRAWING)}
    assert os.listdir(tmp_path) == [sha(DRAWING)]
    assert store.verify(sha(DRAWING))
