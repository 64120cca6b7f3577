"""The tests' own process hygiene: whole process trees are stopped, and a leaked process fails the session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from tests.processes import stop_tree

REPO = Path(__file__).resolve().parents[1]

# A leader that dies on SIGTERM, with a child that leaves the leader's session and process group and
# ignores SIGTERM, and a grandchild that ignores it too: how `airflow standalone` and its worker behave.
STUBBORN_TREE = textwrap.dedent(
    """
    import os, signal, time
    if os.fork() == 0:
        os.setsid()
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if os.fork() == 0:
            time.sleep(1000)
        print(os.getpid(), flush=True)
        time.sleep(1000)
    time.sleep(1000)
    """
)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_stop_tree_kills_descendants_that_left_the_group_outlive_the_leader_and_ignore_sigterm():
    leader = subprocess.Popen(
        [sys.executable, "-c", STUBBORN_TREE], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert leader.stdout is not None
    child = psutil.Process(int(leader.stdout.readline()))
    tree = [child, *child.children()]
    try:
        assert len(tree) == 2 and os.getsid(child.pid) != leader.pid and os.getpgid(child.pid) != leader.pid
        stop_tree([leader], grace=0.5)
        assert leader.returncode == -signal.SIGTERM  # the leader went first, on SIGTERM …
        assert not [p for p in tree if _alive(p)]  # … and its stubborn descendants were killed all the same
    finally:
        for proc in [*tree, psutil.Process(leader.pid)] if leader.poll() is None else tree:
            if _alive(proc):
                proc.kill()
        leader.stdout.close()
        leader.wait()


@pytest.mark.slow  # a whole pytest run in a subprocess
def test_a_process_left_running_fails_the_session(tmp_path):
    (tmp_path / "test_leak.py").write_text(
        textwrap.dedent(
            """
            import subprocess

            import tests.conftest

            tests.conftest.LEFTOVER_GRACE = 0.5


            def test_leaks_an_orphan():
                subprocess.run(["bash", "-c", "setsid sleep 1000 & exit 0"], check=True)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", "-q", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout
    assert "were still running at the end (now killed):\n  pid " in done.stdout
    assert "sleep 1000" in done.stdout
