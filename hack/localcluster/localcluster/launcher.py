"""Runs one container: joins the pod's network namespace, makes its own mount, PID, UTS and IPC
namespaces, builds a root (an overlay of the host's / with the pod's volumes bound at their
mountPaths), and runs the command under a small init that forwards signals and reaps.

Run by the node agent as `python -I launcher.py CONFIG.json`; stdlib only.
Process tree: launcher (host) -> init (PID 1 in the container) -> the container's command.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
START_ERROR_EXIT = 127

libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        libc.mount(
            source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def bind(source: str, target: str, read_only: bool = False, recursive: bool = False) -> None:
    mount(source, target, None, MS_BIND | (MS_REC if recursive else 0))
    if read_only:
        mount("none", target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | (MS_REC if recursive else 0))


def in_root(root: str, path: str) -> str:
    """`path` inside `root`, following symlinks as if `root` were / (so /var/run -> /run stays inside)."""
    parts = [p for p in path.split("/") if p]
    resolved = ""
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            resolved = os.path.dirname(resolved)
            continue
        candidate = f"{resolved}/{part}"
        full = root + candidate
        if os.path.islink(full):
            hops += 1
            if hops > 40:
                raise OSError(f"too many levels of symbolic links in {path}")
            target = os.readlink(full)
            if target.startswith("/"):
                resolved = ""
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved = candidate
    return root + (resolved or "/")


def make_mountpoint(path: str, is_file: bool) -> None:
    if os.path.lexists(path):
        return
    if is_file:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w"):
            pass
    else:
        os.makedirs(path, exist_ok=True)


def build_root(cfg: dict) -> str:  # type: ignore[type-arg]
    scratch = cfg["scratch"]
    os.makedirs(scratch, exist_ok=True)
    # The writable layer lives in memory, private to this container, like a container's own layer.
    mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
    upper, work, root = (os.path.join(scratch, d) for d in ("upper", "work", "root"))
    for d in (upper, work, root):
        os.makedirs(d)
    mount("overlay", root, "overlay", 0, f"lowerdir=/,upperdir={upper},workdir={work}")

    # /proc for this PID namespace, /sys for this network namespace, a minimal /dev.
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    try:
        mount("sysfs", f"{root}/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        bind("/sys", f"{root}/sys", read_only=True, recursive=True)
    dev = f"{root}/dev"
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755")
    for node in ("null", "zero", "full", "random", "urandom", "tty"):
        make_mountpoint(f"{dev}/{node}", is_file=True)
        bind(f"/dev/{node}", f"{dev}/{node}")
    for d in ("pts", "shm", "mqueue"):
        os.makedirs(f"{dev}/{d}")
    bind("/dev/pts", f"{dev}/pts")
    mount("tmpfs", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"),
                         ("ptmx", "pts/ptmx")):
        os.symlink(target, f"{dev}/{link}")

    # Files a kubelet manages: hosts, hostname, resolv.conf.
    etc = f"{root}/etc"
    with open(f"{etc}/hostname", "w") as f:
        f.write(cfg["hostname"] + "\n")
    with open(f"{etc}/hosts", "w") as f:
        f.write("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
        f.write(f"{cfg['podIP']}\t{cfg['hostname']}\n")
    if os.path.islink(f"{etc}/resolv.conf"):
        os.unlink(f"{etc}/resolv.conf")
    with open(f"{etc}/resolv.conf", "w") as f:
        f.write(cfg.get("resolvConf", ""))
    if cfg.get("uid", 0) != 0:
        # The host's Python lives under /root; let a non-root container traverse it, in this layer only.
        os.chmod(f"{root}/root", 0o755)

    for m in cfg["mounts"]:
        target = in_root(root, m["path"])
        make_mountpoint(target, is_file=m.get("file", False))
        bind(m["source"], target, read_only=m.get("readOnly", False))
    # The host directories that stand in for the image (the Python environment, the sources) stay
    # visible even where a volume is mounted over one of their parents, as /tmp often is.
    for path in cfg.get("imagePaths", []):
        if any(path == m["path"] or path.startswith(m["path"].rstrip("/") + "/") for m in cfg["mounts"]):
            target = in_root(root, path)
            os.makedirs(target, exist_ok=True)
            bind(path, target, read_only=True, recursive=True)
    if cfg.get("readOnlyRoot"):
        mount("none", root, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    return root


def write_status(cfg: dict, **fields: object) -> None:  # type: ignore[type-arg]
    # Opened before chroot: the status file lives outside the container's root.
    data = json.dumps(fields).encode()
    os.ftruncate(cfg["statusFd"], 0)
    os.pwrite(cfg["statusFd"], data, 0)


def find_command(argv0: str, path: str) -> str | None:
    if "/" in argv0:
        return argv0 if os.access(argv0, os.X_OK) and os.path.isfile(argv0) else None
    return shutil.which(argv0, path=path)


def run_container_init(cfg: dict) -> int:  # type: ignore[type-arg]
    """PID 1 of the container: set up the root, start the command, forward signals, reap."""
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    cfg["statusFd"] = os.open(cfg["statusFile"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        root = build_root(cfg)
        hostname = cfg["hostname"].encode()
        _check(libc.sethostname(hostname, len(hostname)), "sethostname")
        os.chroot(root)
        os.chdir("/")
        workdir = cfg.get("workingDir") or "/"
        if not os.path.isdir(workdir):
            os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)
    except OSError as e:
        write_status(cfg, reason="CreateContainerError", message=f"setting up the container: {e}")
        return START_ERROR_EXIT

    env = cfg["env"]
    argv = cfg["argv"]
    resolved = find_command(argv[0], env.get("PATH", os.defpath))
    if resolved is None:
        write_status(
            cfg,
            reason="CreateContainerError",
            message=(
                f'exec: "{argv[0]}": executable file not found in $PATH '
                f"(images are not pulled on this node: the command must exist on the host)"
            ),
        )
        return START_ERROR_EXIT
    write_status(cfg, started=True)

    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            if cfg.get("noNewPrivs"):
                libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            uid, gid = cfg.get("uid", 0), cfg.get("gid", 0)
            os.setgroups(cfg.get("groups", []))
            os.setgid(gid)
            os.setuid(uid)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            os.execve(resolved, argv, env)
        except OSError as e:
            os.write(2, f"exec {argv[0]}: {e}\n".encode())
            os._exit(START_ERROR_EXIT)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


def main() -> int:
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    netns = os.open(cfg["netns"], os.O_RDONLY)
    _check(libc.setns(netns, CLONE_NEWNET), "setns net")
    os.close(netns)
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID), "unshare")
    mount("none", "/", None, MS_REC | MS_PRIVATE)

    init = os.fork()
    if init == 0:
        os._exit(run_container_init(cfg))
    # Written whole under its final name, so the node agent never reads a partial PID.
    partial = cfg["pidFile"] + ".partial"
    with open(partial, "w") as f:
        f.write(str(init))
    os.replace(partial, cfg["pidFile"])

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(init, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            _, status = os.waitpid(init, 0)
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        except InterruptedError:
            continue


if __name__ == "__main__":
    sys.exit(main())
