"""One job per workdir: an exclusive lock held for the life of the training process.

Two jobs writing one workdir corrupt each other's checkpoints and history, so the second one is
refused with the holder's pid and host. The lock is an `fcntl.flock` on WORKDIR/.lock-p<i>
(i = the JAX process index, so the processes of one multi-process job do not exclude each
other, while a second job's process i does). The kernel drops a flock when its holder dies,
however it dies (kill -9 included), so a lock is never stale in effect; the holder's record
left in the file by a dead process is reported as a stale lock and taken over.

flock is reliable on local filesystems; on NFS it depends on the server (Linux NFSv4 maps it
to byte-range locks, which work).
"""

import fcntl
import json
import os
import socket
import time

from absl import logging


class WorkdirBusyError(RuntimeError):
  """Another live process holds the workdir."""


class WorkdirLock:
  """Context manager: `with WorkdirLock(workdir, process_index): train...`."""

  def __init__(self, workdir: str, process_index: int = 0):
    self.path = os.path.join(workdir, f".lock-p{process_index}")
    self._fd = None

  def __enter__(self) -> "WorkdirLock":
    self.acquire()
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  def acquire(self) -> None:
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read_holder(fd)
      os.close(fd)
      raise WorkdirBusyError(
          f"{os.path.dirname(self.path)} is in use by another job: pid {holder.get('pid', '?')}"
          f" on {holder.get('host', '?')}, started {holder.get('started', '?')} (lock file "
          f"{self.path}). Wait for it to finish, stop it, or use another workdir.") from None
    stale = _read_holder(fd)
    if stale:
      logging.warning("%s: stale lock of pid %s on %s (started %s) is no longer held; that "
                      "job died without releasing it. Taking over.", self.path,
                      stale.get("pid"), stale.get("host"), stale.get("started"))
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                              "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
    os.fsync(fd)
    self._fd = fd

  def release(self) -> None:
    """Clears the holder record (a clean exit leaves no stale lock) and unlocks."""
    if self._fd is None:
      return
    os.ftruncate(self._fd, 0)
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None


def _read_holder(fd: int) -> dict:
  data = os.pread(fd, 4096, 0)
  if not data:
    return {}
  try:
    return json.loads(data)
  except ValueError:  # a holder killed while writing its record
    return {"pid": "?", "host": "?", "started": "?"}
