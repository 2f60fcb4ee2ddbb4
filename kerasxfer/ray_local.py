"""The local Ray cluster kerasxfer starts (``--executor=ray`` without an address): reachable from this machine
only, and gone with the process that started it.

* **Loopback only.** Ray 2.60 turns ``127.0.0.1`` into the machine's
  external address (``services.resolve_ip_for_localhost``) and binds its
  gRPC servers to every interface, so a cluster "on 127.0.0.1" listened on
  all of them (its runtime-env agent on the external address).  Ray's
  single-machine mode, the one it uses on macOS and Windows
  (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), keeps the node's address on
  loopback, and every server of the cluster then binds there:
  :func:`loopback_only` turns it on while the cluster starts (its processes
  inherit it) and restores it after, so a later connection to a real cluster
  is unaffected.  Ray's token authentication (on by default) stays on.
* **Gone with the driver.** Ray's agents outlive a driver killed with
  SIGKILL by up to a minute, orphaned.  :func:`guard` starts a small
  watchdog process (a session of its own) that notes the driver's Ray
  processes every second and, once the driver is gone (the pipe between them
  closes: an exit, a crash or SIGKILL alike), kills those still running.
  Only processes of Ray's own are noted, never the driver's other children.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

#: Ray's switch for its single-machine mode (read by ``ray._private.ray_constants`` as ENABLE_RAY_CLUSTER)
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"

_WATCHDOG = r"""
import os, select, sys, psutil
driver, seen = psutil.Process(int(sys.argv[1])), {}

def ours(p):
    try:
        cmd = p.cmdline()
    except psutil.Error:
        return False
    return any(a.startswith("ray::") or "/ray/" in a for a in cmd[:2])

while True:
    try:
        for p in driver.children(recursive=True):
            if p.pid not in seen and ours(p):
                seen[p.pid] = p
    except psutil.Error:
        pass
    ready, _, _ = select.select([0], [], [], 1.0)
    if ready and not os.read(0, 1):
        break
for p in seen.values():
    try:
        if p.is_running():
            p.kill()
    except psutil.Error:
        pass
"""


@contextlib.contextmanager
def loopback_only():
    """While the local cluster starts: Ray's single-machine mode, so every process of it listens on loopback."""
    import ray._private.ray_constants as constants  # the attribute services.get_node_ip_address reads

    before_env, before = os.environ.get(SINGLE_MACHINE_ENV), constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE_ENV], constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        constants.ENABLE_RAY_CLUSTER = before
        if before_env is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = before_env


_GUARDS: list = []  # the watchdog of this process's local cluster (its pipe stays open while this process lives)


def guard() -> subprocess.Popen:
    """Start the watchdog that kills this process's Ray processes once this process is gone."""
    w = subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the driver's process group reaches Ray first, the watchdog after
        close_fds=True,
    )
    _GUARDS.append(w)
    return w
