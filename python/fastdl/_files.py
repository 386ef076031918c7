"""Reading and writing files that may be hostile: the primitives the model file (saving.py),
`fastdl train`'s data (_cli_data.py), ONNX export and the history plot share.

- atomic_write: a save that never leaves a half-written file, never replaces a device, FIFO,
  socket or directory, keeps a replaced file's mode and owner, and cleans up after killed saves.
- open_regular: opens a file for reading only if it is a regular file, without blocking on a
  FIFO or acting on a device.
- check_member_sizes, read_npy_header: what a zip member and a .npy header declare, checked
  before anything is allocated for it, so that a crafted file costs no more than its real size.

Problems with a file's content raise BadContent, whose message is a clause the caller puts after
what it names (a model file's member, a --data array) in its own kind of error.
"""

import collections
import errno
import hashlib
import math
import os
import secrets
import stat
import tokenize
import zipfile

from numpy.lib import format as npy_format

try:
    import fcntl
except ImportError:  # Windows: no flock, so stale temporary files are not cleaned up there
    fcntl = None

_TEMP_START, _TEMP_END = ".fastdl-", ".tmp"


class BadContent(ValueError):
    """What is wrong with a file's content, as a clause without its subject (the caller names the
    file or member and raises its own kind of error)."""


class NotNpy(BadContent):
    """A member that does not start as a .npy array does (callers may suggest how to save one)."""


# --- writing -----------------------------------------------------------------------------------

def atomic_write(path, write):
    """Calls write(file) on a temporary file next to path, then renames it onto path.

    path may be a str, bytes or os.PathLike. A symlink is followed: the file it points to is
    replaced and the link stays. A target that exists must be a regular file: a device, FIFO or
    socket is refused with FileExistsError and a directory with IsADirectoryError, before
    anything is written. A new file gets the mode an ordinary new file gets (0o666 less the
    umask: the kernel applies the umask, so it is never read or changed); a replaced file keeps
    its permission bits (a private 0600 model stays private) and, where the process may give it
    (root), its owner. Temporary files that an earlier, killed save to the same path left behind
    are removed afterwards (see _remove_stale_temps)."""
    path = check_save_target(path)  # refuses a device, FIFO, socket or directory before the write
    directory = os.path.dirname(path)
    prefix = _temp_prefix(path)
    fd, tmp = _create_temp(directory, prefix)
    try:
        with os.fdopen(fd, "wb") as f:  # closed (and its lock released) only after the rename
            try:
                write(f)
                f.flush()
                existing = _existing(path)  # again: the target may have changed meanwhile
                if existing is not None:
                    _copy_owner_and_mode(f.fileno(), existing)
                os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
    finally:
        _remove_stale_temps(directory, prefix)


def is_temp_name(path):
    """Whether path names one of atomic_write's temporary files (error messages leave them out)."""
    base = os.path.basename(path)
    return base.startswith(_TEMP_START) and base.endswith(_TEMP_END)


def _target(path):
    """The absolute path a save to `path` writes: symlinks resolved, so that the file a link
    points to is replaced and not the link. Refuses an empty path (which would otherwise save
    to the parent of the current directory) and a path ending in a separator (a directory)."""
    path = os.fsdecode(os.fspath(path))
    if not path:
        raise ValueError(f"cannot save to the empty path {path!r}: give a file name")
    if path.endswith(os.sep) or (os.altsep and path.endswith(os.altsep)):
        raise IsADirectoryError(errno.EISDIR, "cannot save to a path ending in a separator (a directory)", path)
    return os.path.realpath(path)


def check_save_target(path):
    """The real path atomic_write(path) would replace, after refusing what it must not (an empty
    path, a directory, a device, FIFO or socket) with the OSError or ValueError it would raise:
    callers check a target before long work whose result goes there."""
    path = _target(path)
    _existing(path)
    return path


def _existing(path):
    """os.stat of the target if it exists (None if not), refusing what a save must not replace."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "cannot save to a directory", path)
    if not stat.S_ISREG(st.st_mode):
        raise FileExistsError(errno.EEXIST, f"refusing to replace {file_kind(st.st_mode)}: a save replaces only "
                                            f"regular files", path)
    return st


def _copy_owner_and_mode(fd, st):
    """Gives the new file the replaced file's owner (where allowed: root may, others may not,
    which fails quietly) and then its permission bits (after the owner: a chown clears set-id
    bits). Set-id and sticky bits are not copied: a saved file is data."""
    if hasattr(os, "fchown") and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.fchown(fd, st.st_uid, st.st_gid)
        except OSError:
            pass
    if hasattr(os, "fchmod"):
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o777)


def _temp_prefix(path):
    """The start of the temporary names of saves to path: '.fastdl-' and a hash of the file name,
    so that a save finds the leftovers of saves to the same path, and only those."""
    name = os.path.basename(os.path.abspath(os.fspath(path)))
    return f"{_TEMP_START}{hashlib.sha256(os.fsencode(name)).hexdigest()[:12]}-"


def _create_temp(directory, prefix):
    """Creates and opens a new temporary file; returns (fd, path). The writer holds an
    exclusive flock on it until it is renamed: the lock dies with the process, which is how
    _remove_stale_temps tells a killed save's file from one being written now."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f"{prefix}{secrets.token_hex(8)}{_TEMP_END}")
        fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask
        if fcntl is None:
            return fd, tmp
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # A cleaner may have locked and removed the file between our create and our lock:
            # then it is gone from the folder, and we start again with a new name.
            if os.fstat(fd).st_nlink > 0:
                return fd, tmp
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _remove_stale_temps(directory, prefix):
    """Removes the temporary files of saves to the same target whose writer has died (killed
    mid-save): a file we can lock has no live writer. Errors are ignored: this is tidying."""
    if fcntl is None:
        return
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(_TEMP_END)]
    except OSError:
        return
    for name in names:
        full = os.path.join(directory, name)
        try:  # only regular files: opening a FIFO would block, a device may act on being opened
            if not stat.S_ISREG(os.lstat(full).st_mode):
                continue
            fd = os.open(full, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            st = os.fstat(fd)  # what was opened, should the name have been replaced since the lstat
            if not stat.S_ISREG(st.st_mode):
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a save in progress
            if os.path.samestat(st, os.lstat(full)):
                os.unlink(full)
        except OSError:
            pass
        finally:
            os.close(fd)


# --- reading -----------------------------------------------------------------------------------

def open_regular(path, refuse):
    """path opened for reading in binary mode, if it is a regular file (symlinks followed);
    otherwise refuse(path, os.stat result) raises the caller's error. Nothing blocks or acts on
    a device: the type is checked before opening, the open is non-blocking (should path become
    a FIFO after the check), and what was opened is checked again."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        refuse(path, st)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)  # what was opened, should the name have been replaced since the stat
        if not stat.S_ISREG(st.st_mode):
            refuse(path, st)
        if getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)  # reads of the regular file then wait for the disk as usual
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def file_kind(mode):
    """What a file that is not a regular file is, for messages ('a FIFO (named pipe)')."""
    for test, kind in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "a file that is not a regular file"


# What data of each zip compression method can unpack to at most, from its packed size:
# (name, factor, slack). Deflate expands at most 1032-fold (plus block overhead); stored data
# is itself. Other methods have no bound here, and are not checked.
_MOST_UNPACKED = {zipfile.ZIP_STORED: ("stored", 1, 0), zipfile.ZIP_DEFLATED: ("deflated", 1032, 64)}


def check_member_sizes(info, archive_size):
    """Raises BadContent when the sizes zip member `info` declares cannot be true: packed, more
    than the archive's `archive_size` bytes; unpacked, more than its packed bytes can unpack to.
    Sizes are what a reader allocates by, so they are checked before the member is read."""
    if info.compress_size > archive_size:
        raise BadContent(f"the archive says it takes {info.compress_size:,} bytes, more than the "
                         f"{archive_size:,} bytes of the file (a damaged or truncated file)")
    method = _MOST_UNPACKED.get(info.compress_type)
    if method is not None and info.file_size > method[1] * info.compress_size + method[2]:
        raise BadContent(f"the archive says it unpacks to {info.file_size:,} bytes, more than "
                         f"{info.compress_size:,} {method[0]} bytes can hold (a damaged or crafted file)")


def zip_members(z, archive_size, max_members, what):
    """An archive's members by name, refusing (BadContent, messages naming `what`, e.g. "the model
    file") what fastdl never writes and zipfile would fail on later: more than max_members members
    (refused before any is looked at), repeated names, encryption, compression other than stored or
    deflate, and sizes that cannot be true (check_member_sizes)."""
    infos = z.infolist()
    if len(infos) > max_members:
        raise BadContent(f"{what} has {len(infos):,} members; at most {max_members} are expected")
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        repeated = sorted(n for n, count in collections.Counter(names).items() if count > 1)
        raise BadContent(f"{what} has members of the same name: {_short(repeated)}")
    for info in infos:
        if info.flag_bits & 0x61:  # 0x1 encrypted, 0x20 patched data, 0x40 strong encryption
            raise BadContent(f"{what}'s member {_short(info.filename)} is encrypted or patched")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise BadContent(f"{what}'s member {_short(info.filename)} uses compression method "
                             f"{info.compress_type}; fastdl reads stored or deflated members")
        try:
            check_member_sizes(info, archive_size)
        except BadContent as exc:
            raise BadContent(f"{what}'s member {_short(info.filename)}: {exc}") from None
    return dict(zip(names, infos))


def _short(value):
    import reprlib
    return reprlib.repr(value)


class NpyHeader(collections.namedtuple("NpyHeader", "shape fortran_order dtype offset")):
    """A .npy header as read_npy_header returns it; offset is where the data starts."""
    __slots__ = ()

    @property
    def nbytes(self):
        """The bytes of data the header declares."""
        return math.prod(self.shape) * self.dtype.itemsize


_NPY_MAGIC = b"\x93NUMPY"
_NPY_HEADER_READERS = {(1, 0): npy_format.read_array_header_1_0, (2, 0): npy_format.read_array_header_2_0}
# what NumPy's parsing of a crafted header raises (its text is evaluated as a Python literal)
_NPY_PARSE_ERRORS = (ValueError, TypeError, SyntaxError, RecursionError, tokenize.TokenError)


def read_npy_header(f):
    """The NpyHeader at the start of stream f (a zip member), reading only the header. Raises
    NotNpy when f does not start as a .npy array does, and BadContent for a format version other
    than 1.0 and 2.0, a header NumPy cannot parse, or a negative length; errors of the stream
    itself (a damaged archive) propagate."""
    start = f.read(len(_NPY_MAGIC) + 2)
    if not start.startswith(_NPY_MAGIC):
        raise NotNpy(f"it starts {start!r}, not with the .npy magic string {_NPY_MAGIC!r}")
    version = tuple(start[len(_NPY_MAGIC):])
    if version not in _NPY_HEADER_READERS:
        raise BadContent(f"its .npy format version is {'.'.join(map(str, version)) or 'missing'}; fastdl reads 1.0 "
                         f"and 2.0, and NumPy writes 3.0 only for structured arrays with non-Latin-1 field names")
    try:
        shape, fortran_order, dtype = _NPY_HEADER_READERS[version](f)
    except _NPY_PARSE_ERRORS as exc:
        raise BadContent(" ".join(str(exc).split())) from None
    if any(d < 0 for d in shape):
        raise BadContent(f"its header declares shape {shape}, which has a negative length")
    return NpyHeader(shape, fortran_order, dtype, f.tell())
