"""Child processes for kill-and-resume tests."""

import subprocess
import time


def kill_when(cmd, cwd, ready, env=None, timeout: float = 600, poll: float = 0.02) -> None:
    """Start ``cmd`` and SIGKILL it as soon as ``ready()`` is true (or it ended, or ``timeout`` passed)."""
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + timeout
    while not ready() and p.poll() is None and time.time() < deadline:
        time.sleep(poll)
    p.kill()
    p.wait()
