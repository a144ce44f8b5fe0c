"""A content-addressed store for submitted files too large to travel inside a Kafka record.

Each file is ``<directory>/<sha256 hex>``: the name is the content's digest, so the same file is stored once,
a path says what it must contain (``verify``), and no name from the portal ever reaches the file system.
Writes are atomic (a temporary file in the same directory, fsync, ``os.replace``, fsync of the directory):
a reader sees the whole file or none. Synchronous on purpose: callers run it in a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import stat
import tempfile
from pathlib import Path

from connector.pull.national import InvalidSubmission

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
DIRECTORY_MODE = 0o750
FILE_MODE = 0o640  # the one-stop system's readers share the group
_CHUNK = 1024 * 1024


class AttachmentStore:
    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_for(self, sha256: str) -> Path:
        """Where the file with this digest lives (whether or not it is there). The digest must be 64 hex
        digits (either case; the name is lower case), so nothing else can name a path."""
        if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
            raise InvalidSubmission("must be 64 hexadecimal digits (SHA-256)", reason="bad_sha256", field="sha256")
        return self.directory / sha256.lower()

    def put(self, content: bytes, *, sha256: str | None = None) -> Path:
        """Store ``content``; return its path. When ``sha256`` is given the content must hash to it
        (InvalidSubmission ``file_sha256_mismatch`` otherwise, nothing written). A file already there with the
        right size is left as it is; one of another size (a torn copy left by hand) is replaced."""
        digest = hashlib.sha256(content).hexdigest()
        if sha256 is not None:
            self.path_for(sha256)  # validates
            if not hmac.compare_digest(digest, sha256.lower()):
                raise InvalidSubmission("the content does not have this SHA-256", reason="file_sha256_mismatch",
                                        field="sha256")
        target = self.path_for(digest)
        try:
            found = os.lstat(target)
        except FileNotFoundError:
            pass
        else:
            if stat.S_ISREG(found.st_mode) and found.st_size == len(content):
                return target
        self.directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=self.directory, prefix=f".{digest[:16]}.", suffix=".part")
        try:
            with os.fdopen(descriptor, "wb") as stream:
                stream.write(content)
                stream.flush()
                os.fchmod(stream.fileno(), FILE_MODE)
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        self._sync_directory()
        return target

    def verify(self, sha256: str) -> bool:
        """True when the file for this digest exists and its content still hashes to it."""
        path = self.path_for(sha256)
        digest = hashlib.sha256()
        try:
            with path.open("rb") as stream:
                while chunk := stream.read(_CHUNK):
                    digest.update(chunk)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return False
        return hmac.compare_digest(digest.hexdigest(), sha256.lower())

    def _sync_directory(self) -> None:
        # The rename is durable only once the directory entry is; some file systems cannot fsync a directory.
        try:
            descriptor = os.open(self.directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except OSError:
            return
        try:
            with contextlib.suppress(OSError):
                os.fsync(descriptor)
        finally:
            os.close(descriptor)


__all__ = ["AttachmentStore"]
