"""Processes the tests start: stop whole process trees, and find any that outlive the test session.

Descendants are found by walking /proc (psutil) from the processes we started, so a process that changed
its process group or outlived its parent is still found. The pytest process is made a child subreaper
(:func:`become_subreaper`): a process whose parent exits is re-parented to pytest instead of init, so it
stays a descendant of pytest and is reaped by us.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterable

import psutil

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
KILL_TIMEOUT = 30.0  # after SIGKILL, how long a process may take to disappear before we give up


def become_subreaper() -> bool:
    """Re-parent this process's orphaned descendants to it (Linux ``prctl``); False where unsupported."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def describe(proc: psutil.Process) -> str:
    """``pid <n>: <command line>`` (or the process name when the command line cannot be read)."""
    try:
        return f"pid {proc.pid}: {' '.join(proc.cmdline()) or proc.name()}"
    except psutil.Error:
        return f"pid {proc.pid}: (gone)"


def _alive(proc: psutil.Process) -> bool:
    """Running, not a zombie, and not a new process that reused the pid."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def reap_children(pids: Iterable[int] | None = None) -> None:
    """Collect the exit status of this process's zombie children (re-parented orphans): all of them, or
    only those in ``pids`` (so as not to take it from a ``subprocess.Popen`` that still waits for it)."""
    only = None if pids is None else set(pids)
    for child in psutil.Process().children():
        try:
            if (only is None or child.pid in only) and child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            continue


def live_descendants() -> list[psutil.Process]:
    """Every live process below this one (zombie children are reaped first)."""
    reap_children()
    return [p for p in psutil.Process().children(recursive=True) if _alive(p)]


def _members(groups: set[int], known: dict[int, psutil.Process]) -> list[psutil.Process]:
    """The live processes of the trees being stopped: those in one of ``groups`` (process group or session
    id, leaders included), those already ``known`` (kept across calls, as re-parenting hides them from
    their original parent), and every descendant of these. Adds what it finds to ``known``."""
    if groups:
        for proc in psutil.process_iter():
            try:
                if proc.pid in groups or os.getpgid(proc.pid) in groups or os.getsid(proc.pid) in groups:
                    known.setdefault(proc.pid, proc)
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue
    for proc in list(known.values()):
        try:
            for child in proc.children(recursive=True):
                known.setdefault(child.pid, child)
        except psutil.Error:
            continue
    for pid, proc in list(known.items()):
        if not _alive(proc):
            del known[pid]
    return list(known.values())


def _signal(procs: Iterable[psutil.Process], groups: Iterable[int], sig: signal.Signals) -> None:
    for group in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)  # checks the pid was not reused


def stop_tree(
    leaders: Iterable[subprocess.Popen] = (), others: Iterable[psutil.Process] = (), grace: float = 30.0
) -> None:
    """SIGTERM the process groups of ``leaders`` (started with ``start_new_session=True``), every process in
    their sessions, ``others``, and every descendant of all of these; SIGKILL whatever is still alive after
    ``grace`` seconds, whether or not the leaders have exited; reap the leaders and re-parented orphans.

    Raises ``AssertionError`` if a process survives SIGKILL for :data:`KILL_TIMEOUT` seconds.
    """
    leaders = list(leaders)
    groups = {p.pid for p in leaders}
    known = {p.pid: p for p in others}
    kill_at = time.monotonic() + grace
    sig = signal.SIGTERM
    sent: dict[int, signal.Signals] = {}
    # walk the trees before a signal makes parents exit and their orphans move
    seen = {p.pid for p in _members(groups, known)}
    _signal([], groups, sig)
    while True:
        for leader in leaders:
            leader.poll()  # reaps the leader once it exited
        reap_children(seen - groups)
        members = _members(groups, known)
        seen.update(p.pid for p in members)
        if not members:
            break
        now = time.monotonic()
        if now >= kill_at + KILL_TIMEOUT:
            raise AssertionError("processes survived SIGKILL: " + "; ".join(map(describe, members)))
        if now >= kill_at and sig is signal.SIGTERM:
            sig = signal.SIGKILL
            _signal([], groups, sig)
        fresh = [p for p in members if sent.get(p.pid) is not sig]
        _signal(fresh, (), sig)
        sent.update((p.pid, sig) for p in fresh)
        time.sleep(0.1)
    reap_children(seen - groups)
    for leader in leaders:
        leader.wait()
