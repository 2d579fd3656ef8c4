"""What long work may be asked while it runs: to stop, because whoever asked for it has gone.

A server sets ``stop_when(check)`` around a client's request; the decoders' waits, the
timeline's stream and the explanation's passes call ``checkpoint()``, which raises
``Cancelled`` once ``check()`` says so. Nothing half-done is cached (a cancelled make
raises through the caches), and the decoder process of a cancelled stream is stopped.
Without a check (the command line, the library) ``checkpoint()`` does nothing.
"""
from __future__ import annotations

import contextlib
import contextvars
import threading
import time

from .errors import UAVMError


class Cancelled(UAVMError):
    """The client that asked for this work has gone: nobody waits for its answer."""


_CHECK: contextvars.ContextVar = contextvars.ContextVar("uavm_stop_check", default=None)


@contextlib.contextmanager
def stop_when(check):
    """Work done inside (in this thread) stops at its next checkpoint once ``check()`` is true."""
    token = _CHECK.set(check)
    try:
        yield
    finally:
        _CHECK.reset(token)


def checkpoint() -> None:
    check = _CHECK.get()
    if check is not None and check():
        raise Cancelled("the request was cancelled: its client has gone")


def acquire(lock, step: float = 0.25) -> None:
    """``lock.acquire()`` (a lock or a semaphore), giving up with Cancelled if the client goes
    while it waits."""
    while not lock.acquire(timeout=step):
        checkpoint()


@contextlib.contextmanager
def holding(lock, step: float = 0.25):
    acquire(lock, step)
    try:
        yield
    finally:
        lock.release()


def wait(poll, seconds: float, step: float = 0.25) -> bool:
    """``poll(timeout)`` in steps for up to ``seconds``, checking before and in between; -> what
    poll said."""
    checkpoint()
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if poll(max(min(step, left), 0)):
            return True
        checkpoint()
        if left <= step:
            return False


# -- one client's lanes: a client's slow work waits behind its own, never fills every slot -------------
_CLIENT: contextvars.ContextVar = contextvars.ContextVar("uavm_client", default=None)
_LANES: dict = {}  # (client, lane) -> [semaphore, users]
_LANES_LOCK = threading.Lock()


@contextlib.contextmanager
def as_client(key):
    """Work done inside (in this thread) is this client's (a server's session)."""
    token = _CLIENT.set(key)
    try:
        yield
    finally:
        _CLIENT.reset(token)


@contextlib.contextmanager
def lane(name: str):
    """One at a time per client for this kind of work (a window's decode, a timeline): a
    client's second slow request waits for its first, and so cannot hold every shared slot."""
    client = _CLIENT.get()
    if client is None:
        yield
        return
    key = (client, name)
    with _LANES_LOCK:
        entry = _LANES.setdefault(key, [threading.Semaphore(1), 0])
        entry[1] += 1
    try:
        with holding(entry[0]):
            yield
    finally:
        with _LANES_LOCK:
            entry[1] -= 1
            if not entry[1]:
                _LANES.pop(key, None)
