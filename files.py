"""
What every writer of the repo's files shares (checkpoint.py's ckpt.pt, export.py's Hugging Face directories,
data/common.py's datasets), so that nothing the user had is lost:

- a full disk, an exceeded quota or a read-only file system (ENOSPC, EDQUOT, EROFS) is one `error:` line saying
  how much space the write needed and where (space_for), the writer's temporary files removed and the previous
  files untouched: the writers write under a temporary name and rename only what is complete;
- new files and folders get the permissions the user's umask gives (follow_umask): tempfile makes them private;
- two directories swap in one step where the OS can (exchange), so a reader never finds neither.

Test hooks, read from the environment by the writers, so that a test makes a fault happen at one exact point of
a real process (no timing luck, no real full disk):
    GPT_TEST_FULL_DISK=<text>   a write whose target path contains <text> fails with ENOSPC once its data is
                                written, before the rename that would publish it (fault_if_full)
    GPT_TEST_KILL_AT=<point>    the process SIGKILLs itself at the named point (kill_point): 'prepare-renames'
                                (between two renames of a dataset's files), 'export-swap' (an export's new
                                directory complete, before it replaces hf_dir), 'export-swapped' (just after),
                                'sharded-save:<iter>' (rank 0, a sharded checkpoint written, before its rename),
                                'iter:<iter>:<rank>:<torchrun restart>' (train.py, before that step)
"""
import contextlib
import ctypes
import ctypes.util
import errno
import os
import re
import shutil
import signal

from configurator import UserError

DISK_FULL = {errno.ENOSPC: 'no space left on device', getattr(errno, 'EDQUOT', -1): 'disk quota exceeded',
             errno.EROFS: 'read-only file system'}  # (Windows may lack EDQUOT)
_RUST_OS_ERROR = re.compile(r'os error (\d+)|code: (\d+)')  # how safetensors' Rust io::Error names the errno


def disk_full_errno(e):
    """The errno of DISK_FULL behind exception e, or None. Libraries wrap it: torch.save's zip writer raises a
    RuntimeError whose context is the OSError, safetensors a SafetensorError naming 'os error 28' in its text."""
    for e in _chain(e):
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            return e.errno
        if type(e).__name__ == 'SafetensorError':
            m = _RUST_OS_ERROR.search(str(e))
            if m and int(m.group(1) or m.group(2)) in DISK_FULL:
                return int(m.group(1) or m.group(2))
    return None


def _chain(e):
    """e and the exceptions it was raised from or while handling, outermost first."""
    seen = []
    while e is not None and all(e is not x for x in seen):
        seen.append(e)
        e = e.__cause__ or e.__context__
    return seen


def size_text(n):
    for unit in ('bytes', 'kB', 'MB', 'GB'):
        if n < 1000 or unit == 'GB':
            return f"{n:,} bytes" if unit == 'bytes' else f"{n:.1f} {unit}"
        n /= 1000


def disk_full_message(code, path, needed=None, kept=True):
    """'<what happened> writing <path>: it needs about N, and the file system there has M free; <what to do>'.
    needed: bytes, or None when the writer cannot know; path None: not known either. kept: the writer replaced
    nothing (it writes under a temporary name), which the message then says."""
    fix = ("make it writable or write somewhere else" if code == errno.EROFS else
           "free some space (or raise the quota) or write somewhere else")
    if path is None:  # a write deep in some library, which did not say of which file
        return f"{DISK_FULL[code]} while writing a file: {fix}"
    folder = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        free = f"{size_text(shutil.disk_usage(folder).free)} free"
    except OSError:
        free = "unknown free space"
    need = f"it needs about {size_text(needed)}" if needed is not None else "it needs more than there is"
    return (f"{DISK_FULL[code]} writing {path}: {need}, and the file system of {folder} has {free}; {fix}"
            + (". Nothing was replaced: the previous files are as they were" if kept else ''))


def disk_full_error(e):
    """The UserError for exception e if a full disk, a quota or a read-only file system is behind it (the
    scripts' last resort, for the writes that space_for does not wrap: configurator's error hook), else None."""
    code = disk_full_errno(e)
    if code is None:
        return None
    path = next((x.filename for x in _chain(e) if isinstance(x, OSError) and x.filename), None)
    return UserError(disk_full_message(code, path, kept=False))


@contextlib.contextmanager
def space_for(path, needed=None):
    """Run a write of `path` (its temporary files cleaned up by the writer inside the block): a full disk, a quota
    or a read-only file system raised there becomes one UserError saying how much the write needed (needed: bytes,
    or a function computing them, called only on failure) and how much the file system has. Anything else passes."""
    try:
        yield
    except Exception as e:
        code = disk_full_errno(e)
        if code is None:
            raise
        raise UserError(disk_full_message(code, path, needed() if callable(needed) else needed)) from None


def fault_if_full(path):
    """Test hook GPT_TEST_FULL_DISK (see above): raise the OSError a full disk raises, for a write of `path`.
    Writers call it after writing their temporary file and before renaming it into place."""
    target = os.environ.get('GPT_TEST_FULL_DISK')
    if target and target in str(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def kill_point(name):
    """Test hook GPT_TEST_KILL_AT (see above): SIGKILL this process here, as a user's `kill -9` might."""
    if os.environ.get('GPT_TEST_KILL_AT') == name:
        os.kill(os.getpid(), signal.SIGKILL)


def follow_umask(path, mode=0o666):
    """chmod path to mode less the process's umask: what open() would have given it. tempfile.mkstemp and
    mkdtemp create 0600 / 0700 (private to the user) whatever the umask, so a shared group could not read
    a checkpoint or an export written through them. Use mode=0o777 for a folder."""
    umask = os.umask(0)  # the only way to read it portably is to set it; set back at once
    os.umask(umask)
    os.chmod(path, mode & ~umask)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def exchange(a, b):
    """Swap the paths a and b (two directories, or files) in one atomic step with Linux's renameat2
    RENAME_EXCHANGE: no moment has either path missing. False, with nothing done, where the C library or the
    file system lacks it (glibc < 2.28, macOS, Windows, some network file systems): do two renames then."""
    libc_name = ctypes.util.find_library('c')
    if libc_name is None:
        return False
    renameat2 = getattr(ctypes.CDLL(libc_name, use_errno=True), 'renameat2', None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # this file system cannot exchange
        return False
    raise OSError(code, os.strerror(code), a, None, b)
