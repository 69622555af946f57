"""One lock per profile: `kdstudy run`, `verdicts` and `report` hold reports/<profile>/.lock while they work, so
two of them never train into the same folders or time on the same cores at once.

The lock is an flock (POSIX): the system drops it when its holder dies, however it dies, so a dead holder never
blocks. The file itself only says who holds it (pid, host, command, since when), for the message a second
process prints; a record left by a holder killed hard is taken over with a warning.
"""
from __future__ import annotations

import json
import os
import socket
import time
import warnings
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from kdlib.pipeline.paths import reports_root

try:
    import fcntl
except ImportError:  # Windows: profile_lock says so when it is used
    fcntl = None

LOCK_NAME = ".lock"


class ProfileLocked(RuntimeError):
    """Another live process holds the profile's lock; the message is one line naming it."""


class StaleLockWarning(UserWarning):
    """The lock file recorded a holder that no longer held it (killed hard); this process took the lock."""


def lock_path(profile: str) -> Path:
    return reports_root() / profile / LOCK_NAME


def _alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(0, ...) would signal our own process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:  # a process killed hard lingers as a zombie until its parent reaps it: dead all the same
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc (macOS)
        return True


def _read_holder(f) -> dict:
    f.seek(0)
    try:
        holder = json.loads(f.read() or "{}")
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} ({holder.get('command', '?')}, "
            f"since {holder.get('since', '?')})")


def _busy_holder(f) -> dict:
    """Who holds the lock; a holder that has just taken it may not have written itself yet, so wait a moment."""
    for _ in range(10):
        holder = _read_holder(f)
        if holder:
            return holder
        time.sleep(0.05)
    return {}


@contextmanager
def profile_lock(profile: str, command: str):
    """Hold reports/<profile>/.lock for the block; raise ProfileLocked at once if a live process holds it."""
    if fcntl is None:
        raise RuntimeError("kdstudy's profile lock needs fcntl.flock (Linux or macOS); this system lacks it")
    path = lock_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Opened without truncating: the holder's record must survive a second process opening the file.
    f = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT, 0o644), "r+", encoding="utf-8")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ProfileLocked(f"profile {profile!r} is in use by {_describe(_busy_holder(f))}; "
                                f"lock file {path}") from None
        try:
            left = _read_holder(f)
            if left:  # a clean release clears the record: this holder was killed hard
                pid = left.get("pid")
                dead = left.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)
                warnings.warn(f"profile {profile!r}: taking over the lock left by {_describe(left)}, now "
                              f"{'dead' if dead else 'not holding it'}; lock file {path}", StaleLockWarning,
                              stacklevel=3)
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(command.split()),
                      "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            f.seek(0)
            f.truncate()
            f.write(json.dumps(holder))
            f.flush()
            yield holder
        finally:
            # The file stays (cleared): removing it would let a process that opened it just before take an
            # flock on the removed file while a third one locks a new file of the same name.
            f.seek(0)
            f.truncate()
            f.flush()
            fcntl.flock(f, fcntl.LOCK_UN)
    finally:
        f.close()
