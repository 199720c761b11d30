"""A helper: a forked copy of gdb's Python that works out one answer while gdb goes on.

gdb's Python runs on one core.  Following a big heap's bins costs as much as walking it (one
step of Python per free chunk against one per chunk), and neither needs the other until both
are done: so a command forks, the child follows the bins (reading the live process's memory
through its own file, never through gdb, whose state the child must not touch) and sends its
answer back pickled through a pipe, while gdb walks the heap on the other core.

The child touches nothing of gdb's: it reads, computes, writes one pipe (and, with `then`, a
file the parent gave it) and leaves with os._exit (no atexit, no gdb cleanup); any call into
gdb's module fails in it (forbid_gdb), so a path that would ask gdb is a failed child, which
the parent makes up for, never a child meddling with gdb's state.  It ignores SIGINT (Ctrl-C
is the parent's: it kills the child).  The parent always reaps the child, so gdb never meets a
process it did not start.
"""

from __future__ import annotations

import io
import os
import pickle
import select
import signal
import sys
import time
import types
import warnings
from typing import Any, Callable, Generic, Optional, TypeVar

T = TypeVar("T")

# How long the parent waits for the child once it has nothing else to do, at least (and at
# least as long again as the command has run): a child that takes longer is stuck (a lock
# another of gdb's threads held at fork): the parent kills it and works the answer out itself.
PATIENCE = 30.0


class Job(Generic[T]):
    """One child at work (start): `ready()` without waiting, `result()` waits; both reap it."""

    def __init__(self, pid: int, fd: int, then: bool = False) -> None:
        self.pid, self.fd = pid, fd
        self.started = time.monotonic()
        self.then = then  # the child goes on after its answer (start's `then`): finished() tells
        self._done = False
        self._poll = select.poll()  # select() costs more in gdb, which has many files open
        self._poll.register(fd, select.POLLIN)

    def ready(self) -> bool:
        """Whether the child has begun its answer (it writes only once it has one) or ended."""
        return self._done or bool(self._poll.poll(0))

    def result(self) -> Optional[T]:
        """The child's answer, or None when it failed, died or took too long (then the caller
        works it out itself).  Unpickled as it comes through the pipe: a big answer (the bins
        of ten million chunks) is never held twice."""
        if self._done:
            return None
        pipe = _Pipe(self.fd, self._poll, time.monotonic() + max(PATIENCE, time.monotonic() - self.started))
        answer: Optional[T] = None
        try:
            with io.BufferedReader(pipe, 1 << 20) as f:
                answer = pickle.load(f)
            return answer
        except Exception:  # too late, or the child died mid-answer: not a whole pickle
            return None
        finally:
            if answer is None or not self.then:
                self.cancel()

    def finished(self) -> bool:
        """Waits for a child that went on after its answer (`then`) to end; whether it did all
        of it (exit status 0).  Always reaped; True never after cancel()."""
        if self._done:
            return False
        deadline = time.monotonic() + max(PATIENCE, time.monotonic() - self.started)
        try:
            # The pipe's end comes when the child exits (it holds the writing end until then):
            # waited for in short waits, so that a Ctrl-C in gdb is noticed between them.
            while not self._poll.poll(200):
                if time.monotonic() > deadline:
                    return False
            pid, status = os.waitpid(self.pid, 0)
            self._done = True  # reaped
            os.close(self.fd)
            return os.waitstatus_to_exitcode(status) == 0
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Stops the child (if it still runs) and reaps it."""
        if self._done:
            return
        self._done = True
        os.close(self.fd)
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


class _Pipe(io.RawIOBase):
    """The read end of a child's pipe, which waits for its bytes until `deadline` (then
    TimeoutError) in short waits, so that a Ctrl-C in gdb is noticed between them."""

    def __init__(self, fd: int, poll: select.poll, deadline: float) -> None:
        super().__init__()
        self.fd, self.poll, self.deadline = fd, poll, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.poll.poll(200):
            if time.monotonic() > self.deadline:
                raise TimeoutError("the helper took too long")
        return os.readv(self.fd, [buffer])

    def close(self) -> None:  # the fd is the Job's to close
        super().close()


def cores() -> int:
    """How many processors this process may run on: a helper needs a second one to pay."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def forbid_gdb() -> None:
    """In a child: every function of gdb's module raises instead of reaching into the copy of
    gdb's state the fork made (gdb's own files, threads and ptrace are the parent's)."""
    module = sys.modules.get("gdb")
    if module is None:
        return

    def refuse(*_: Any, **__: Any) -> Any:
        raise RuntimeError("the helper must not call gdb")

    for name in dir(module):
        if isinstance(getattr(module, name), (types.BuiltinFunctionType, types.FunctionType)):
            setattr(module, name, refuse)


def start(work: Callable[[], T], then: Optional[Callable[[T], None]] = None) -> Optional[Job[T]]:
    """Forks a child that runs `work` and sends back what it returns, then runs `then` on
    it (its work beyond the answer: Job.finished tells whether it all went well); None when
    fork is not possible (then the caller runs `work` itself)."""
    if not hasattr(os, "fork"):
        return None
    try:
        r, w = os.pipe()
    except OSError:
        return None
    try:
        with warnings.catch_warnings():  # Python 3.12+: gdb has threads; the child uses none of them
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if pid == 0:  # pragma: no cover (the child: coverage does not follow it)
        status = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            os.close(r)
            quiet = os.open(os.devnull, os.O_WRONLY)  # nothing of the child's reaches gdb's terminal
            os.dup2(quiet, 1)
            os.dup2(quiet, 2)
            forbid_gdb()
            answer = work()
            data = pickle.dumps(answer, pickle.HIGHEST_PROTOCOL)
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]
            del data, view
            if then is not None:
                then(answer)
            status = 0
        except BaseException:  # noqa: B036 (any failure: the parent works the answer out itself)
            pass
        finally:
            os._exit(status)
    os.close(w)
    return Job(pid, r, then is not None)
