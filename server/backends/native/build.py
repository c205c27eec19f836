"""kernels.cpp → a shared library, built once per machine with the system's C++ compiler.

torch.compile already needs that compiler on a CPU server (the Dockerfile installs g++), so
the native kernels add no dependency. The library is cached in a directory of this user's
own under the temporary directory (mode 0700, checked: a directory another user made there
is not trusted, and a private one per process is used instead), named by a hash of
everything that shapes it (source, compiler, flags, this CPU), written atomically: servers
starting side by side never load a half-written file. A build takes 0.3-1 s; one that fails
returns None and the torch kernels serve.
"""
from __future__ import annotations

import getpass
import hashlib
import logging
import os
import platform
import shlex
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("kernels.cpp")
# -march=native: built where it runs; x86 and aarch64 spell it differently, so both are tried
_FLAG_SETS = (["-O3", "-march=native"], ["-O3", "-mcpu=native"], ["-O3"])
_COMMON = ["-shared", "-fPIC", "-std=c++17"]


def compiler() -> list[str] | None:
    """$CXX as inductor reads it (a command line: "ccache g++"), else the first C++ compiler on PATH."""
    found = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    return shlex.split(found) if found else None


def cache_dir() -> Path:
    """This user's cache directory, made private (0700) if new; a fresh private one where the
    shared name is someone else's or open to others (its files could be swapped)."""
    path = Path(tempfile.gettempdir()) / f"poolscore_native_{_user()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022:
            return path
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="poolscore_native_"))


def build(source: Path = SOURCE, cache: Path | None = None) -> Path | None:
    """The built library's path (built now unless cached), or None when no compiler builds it."""
    cxx = compiler()
    if cxx is None:
        log.info("no C++ compiler ($CXX, g++, c++, clang++): the native kernels stay off")
        return None
    errors = []
    try:
        cache = cache or cache_dir()
        code = source.read_bytes()
        for flags in _FLAG_SETS:
            target = cache / f"kernels-{_key(code, cxx, flags)}.so"
            if target.exists():
                return target
            error = _compile(cxx, flags, source, target)
            if error is None:
                return target
            errors.append(error)
    except OSError as e:
        errors.append(str(e))
    log.warning("building the native kernels with %s failed; the torch kernels serve: %s", " ".join(cxx), errors[-1])
    return None


def _compile(cxx: list[str], flags: list[str], source: Path, target: Path) -> str | None:
    """None once `target` is built, else what the compiler said."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.part")
        os.close(fd)
    except OSError as e:
        return str(e)
    try:
        done = subprocess.run([*cxx, *flags, *_COMMON, "-o", tmp, str(source)], capture_output=True, text=True,
                              timeout=120)
        if done.returncode != 0:
            return done.stderr.strip()[-2000:] or f"exit status {done.returncode}"
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # on disk before its name: a crash leaves no empty library behind it
        os.replace(tmp, target)  # atomic: a concurrent reader sees no file or the whole one
        return None
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _key(code: bytes, cxx: list[str], flags: list[str]) -> str:
    """What the binary depends on: a change of any gives another file name."""
    try:
        version = subprocess.run([*cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        version = ""
    parts = [code, " ".join(cxx).encode(), " ".join(flags + _COMMON).encode(), version.encode(), _cpu().encode()]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:20]


def _cpu() -> str:
    """This CPU's model and features (-march=native's input); the machine type elsewhere."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    wanted = ("model name", "flags", "Features", "CPU part")
    return platform.machine() + "".join(sorted({line for line in lines if line.startswith(wanted)}))


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (some containers)
        return str(os.getuid())
