"""Stop the embedded Ray cluster's processes as soon as the driver that started them dies.

On a SIGKILL of the driver (OOM killer, `kill -9`) nothing in it runs, and Ray's own
processes notice the loss late: the dashboard, the runtime-env agent and the raylet lived
on for about a minute. `watch_driver` starts a small process that holds the read end of a
pipe whose write end only the driver has; the pipe reads EOF the moment the driver is gone,
whatever killed it, and the reaper then kills the Ray processes the driver started and
everything under them. Linux only (it walks /proc); elsewhere Ray's own timeouts remain.
`stop_ray` is the orderly end, when a command is done: Ray's shutdown without its waits.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

_PROC = "/proc"
TRACK_EVERY_S = 0.5  # how often the reaper notes the tree of Ray processes


def _stat(pid: int) -> tuple[int, str] | None:
    """Return (parent pid, start time) of `pid` from /proc, or None once it is gone."""
    try:
        with open(f"{_PROC}/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may hold spaces and ")"
    return int(fields[1]), fields[19]


def command_line(pid: int) -> str:
    """Return the command line of `pid` ("" once it is gone)."""
    try:
        with open(f"{_PROC}/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children(parents: set[int]) -> dict[int, str]:
    """Return {pid: start time} of the live processes whose parent is in `parents`."""
    found = {}
    for name in os.listdir(_PROC):
        if name.isdigit() and (stat := _stat(int(name))) is not None and stat[0] in parents:
            found[int(name)] = stat[1]
    return found


def ray_processes(driver: int) -> dict[int, str]:
    """Return {pid: start time} of the Ray processes `driver` started (its children that
    run Ray's binaries or scripts); none off Linux (no /proc to walk)."""
    if not os.path.isdir(_PROC):
        return {}
    return {
        pid: start
        for pid, start in _children({driver}).items()
        if "/ray/" in (cmd := command_line(pid)) or cmd.startswith("ray::")
    }


def watch_driver() -> subprocess.Popen[bytes] | None:
    """Start the reaper for this process's Ray children; return it (None off Linux)."""
    roots = ray_processes(os.getpid())
    if not roots:
        return None
    # The whole tree as it is now: the driver may die before the reaper first looks.
    args = [f"{pid}:{start}" for pid, start in family(roots).items()]
    # Its own session: a signal to the driver's process group must not take it first.
    return subprocess.Popen(
        [sys.executable, "-m", __name__, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def family(known: dict[int, str]) -> dict[int, str]:
    """Return those of `known` (pid -> start time) that are still the processes they were,
    with every descendant of theirs."""
    alive = {pid: start for pid, start in known.items() if (s := _stat(pid)) and s[1] == start}
    level = dict(alive)
    while level:
        level = {p: t for p, t in _children(set(level)).items() if p not in alive}
        alive.update(level)
    return alive


def reap(known: dict[int, str]) -> list[int]:
    """Kill the processes of `known` that still run and their descendants; return their pids.

    The tree is frozen before anything dies: a raylet killed while it forks a worker would
    leave that worker to init, out of reach. So every member is stopped (SIGSTOP; a stopped
    process forks nothing more), the walk repeats until it finds no one new (a fork that was
    under way shows up as the stopped parent's child), and only then is all of it killed."""
    targets: dict[int, str] = {}
    while new := {p: t for p, t in family({**known, **targets}).items() if p not in targets}:
        for pid in new:
            _signal(pid, signal.SIGSTOP)
        targets.update(new)
    for pid in targets:
        _signal(pid, signal.SIGKILL)
    return sorted(targets)


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def main(argv: list[str]) -> None:
    """Track the Ray processes named in `argv` (pid:start) and their descendants while the
    driver lives; kill them when its pipe closes."""
    known = {int(p): start for p, start in (a.split(":", 1) for a in argv)}
    stdin = sys.stdin.fileno()
    while True:
        # The tree is noted while the driver lives: once it dies, the raylet dies with it
        # and its agents are re-parented to init, out of reach of a walk from the roots.
        known.update(family(known))
        ready, _, _ = select.select([stdin], [], [], TRACK_EVERY_S)
        if ready and not os.read(stdin, 4096):
            break  # the driver's end closed: it exited or was killed
    reap(known)


# The command line of the Ray autoscaler's monitor (`ray/autoscaler/_private/monitor.py`).
MONITOR_SCRIPT = "/autoscaler/_private/monitor.py"


def stop_ray() -> None:
    """Shut down this process's Ray session now, if it has one; no-op otherwise (Ray is
    not imported for that).

    Two waits of Ray's own shutdown are left out, through which the machine idled at the
    end of every command that used Ray: `roleforge run` over 400 benchmark records took
    9.8-10.0 s with them and 8.4-8.7 s without (3 runs each, alternated, 2 CPUs):
    - at interpreter exit, Ray's handler sleeps 0.5 s first so that the workers' last log
      lines reach the terminal; our sessions send none to the driver (`log_to_driver`
      off here and in `trainers.distributed`), so a command calls this before it exits;
    - Ray stops an embedded cluster's processes one after the other, the GCS before the
      autoscaler's monitor, whose SIGTERM handler then reports its own death to the gone
      GCS and never exits: Ray kills it after 1 s, on every shutdown. An embedded cluster
      has nothing to autoscale, so its monitor (a child of this process; none on a
      cluster this process joined) is killed first, and Ray finds it gone. Off Linux
      (no /proc) the monitor is not found, and Ray stops it its own way.
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    for pid in ray_processes(os.getpid()):
        if MONITOR_SCRIPT in command_line(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    ray.shutdown()


if __name__ == "__main__":
    main(sys.argv[1:])
