"""The data of `fastdl train`: a .csv or .npz file read into finite float32 features and labels,
or a DataError whose one-line message names the file and where in it the problem is (CSV: line
and column counted from 1; .npz: the array and the element's index)."""

import csv
import io
import math
import os
import zipfile
import zlib

import numpy as np

from . import _files

_F32_MAX = float(np.finfo(np.float32).max)
_OTHER_DELIMITERS = {";": ";-separated", "\t": "tab-separated", "|": "|-separated"}


class DataError(ValueError):
    """The data or a file named on the command line does not fit: `fastdl train` prints the message
    as `fastdl: error: <message>` and exits with status 1."""


def load(path, label_column=None):
    """(x, y, label_name): x float32 (samples, features), every value finite; y one label per sample
    (int64 class ids, or strings); label_name says where the labels came from, for messages."""
    if not os.path.exists(path):
        raise DataError(f"--data {path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"--data {path} is a folder, not a file")
    with _files.open_regular(path, _refuse_non_regular) as f:
        if path.lower().endswith(".npz"):
            x, y = _load_npz(path, f)
            return x, y, f"y in {path}"
        return _load_csv(path, f, label_column)


def _refuse_non_regular(path, st):
    """A DataError for --data that is not a regular file (after following links): a FIFO or a
    device could block the open or never end (a link to /dev/zero)."""
    target = f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else ""
    raise DataError(f"--data {path}{target} is {_files.file_kind(st.st_mode)}; it must be a regular file")


def encode_labels(y, label_name):
    """(class ids 0..K-1, class names, a warning or None)."""
    names, ids = np.unique(np.asarray(y), return_inverse=True)
    n, k = len(ids), len(names)
    warning = None
    if k > 2 and k > n / 2:
        warning = (f"{k} classes among {n} samples: {label_name} does not look like class ids "
                   f"(an id or a continuous target? for a CSV, --label-column picks the class column)")
    return ids.reshape(n).astype(np.int64), names, warning


# --- CSV ---------------------------------------------------------------------------------------

def _load_csv(path, f, label_column):
    rows = _csv_rows(path, f)
    try:
        return _parse_csv(path, rows, label_column)
    except DataError as e:
        other = _other_delimiter(rows)
        if other:
            raise DataError(f"{e} (the file looks {other}; fastdl reads comma-separated values)") from None
        raise


def _csv_rows(path, f):
    """[(line number, cells)] of the non-blank rows."""
    raw = f.read()
    nul = raw.find(b"\0")
    if nul >= 0:
        raise DataError(f"{path}: binary data (a NUL byte at offset {nul}), not a CSV text file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}: line {line}: byte 0x{raw[e.start]:02x} is not UTF-8 text "
                        f"(save the file as UTF-8)") from None
    _refuse_other_delimiter(path, text)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows = []
    try:
        for cells in reader:
            if cells and (len(cells) > 1 or cells[0].strip()):
                rows.append((reader.line_num, cells))
    except csv.Error as e:
        unclosed = " (a quote is not closed?)" if "end of data" in str(e) else ""
        raise DataError(f"{path}: line {reader.line_num}: {e}{unclosed}") from None
    return rows


def _refuse_other_delimiter(path, text):
    """A file whose lines (the first 200 tell) hold more of another delimiter than commas, as often
    in each line."""
    head = text[:1 << 16].splitlines()
    if len(text) > 1 << 16:
        head = head[:-1]  # it may be cut short
    lines = [line for line in head[:200] if line.strip()]
    for delimiter, name in _OTHER_DELIMITERS.items():
        counts = {line.count(delimiter) for line in lines}
        if len(counts) == 1 and counts.pop() > max(line.count(",") for line in lines):
            raise DataError(f"{path}: the file looks {name}; fastdl reads comma-separated values")


def _other_delimiter(rows):
    first = rows[0][1] if rows else []
    for delimiter, name in _OTHER_DELIMITERS.items():
        if any(delimiter in cell for cell in first):
            return name
    return None


def _parse_csv(path, rows, label_column):
    if not rows:
        raise DataError(f"{path}: no rows (the file is empty or blank)")
    first_line, first = rows[0][0], [c.strip() for c in rows[0][1]]
    width = len(first)
    if width < 2:
        raise DataError(f"{path}: line {first_line} has a single column; a CSV needs feature columns "
                        f"and a label column")
    named = label_column is not None and not _is_int(label_column)
    if named:
        if label_column not in first:
            raise DataError(f"{path}: no column named {label_column!r} (columns: {first})")
        if first.count(label_column) > 1:
            raise DataError(f"{path}: the header names column {label_column!r} twice")
        col, header = first.index(label_column), True
    else:
        col = width - 1 if label_column is None else int(label_column)
        if not -width <= col < width:
            raise DataError(f"{path}: --label-column {col} is outside its {width} columns")
        col %= width
        # a header is a first row whose feature cells are not all numbers (labels may be words)
        header = not all(_is_float(v) for i, v in enumerate(first) if i != col)
    data = rows[1:] if header else rows
    if not data:
        raise DataError(f"{path}: a header line but no data rows")

    def column(j):
        return f"column {j + 1} ({first[j]!r})" if header else f"column {j + 1}"

    for line, cells in data:
        if len(cells) != width:
            raise DataError(f"{path}: line {line} has {len(cells)} cells, but line {first_line} has {width}")
    lines = np.array([line for line, _ in data])
    table = np.array([cells for _, cells in data], dtype=str)
    feature_columns = [j for j in range(width) if j != col]
    x = _csv_features(path, table[:, feature_columns], lines, [column(j) for j in feature_columns])
    labels = np.char.strip(table[:, col])
    empty = np.flatnonzero(labels == "")
    if len(empty):
        raise DataError(f"{path}: line {lines[empty[0]]}, label {column(col)} is empty "
                        f"(fill it in or remove the row)")
    y = _labels_from_text(labels, lambda i: f"{path}: line {lines[i]}, label {column(col)}",
                          hint="--label-column picks the class column")
    return x, y, f"the label {column(col)} of {path}"


def _csv_features(path, cells, lines, columns):
    """float32 features from a table of strings; a DataError names the first bad cell."""
    try:
        x = cells.astype(np.float64)
    except ValueError:
        x = None
    if x is None:  # find the cell that is not a number, row by row
        for r, row in enumerate(cells):
            for c, cell in enumerate(row):
                if not cell.strip():
                    raise DataError(f"{path}: line {lines[r]}, {columns[c]} is empty")
                if not _is_float(cell):
                    raise DataError(f"{path}: line {lines[r]}, {columns[c]}: {cell.strip()!r} is not a number")
        raise AssertionError("a cell numpy could not convert converts with float()")
    bad = _first_non_finite(x)
    if bad is not None:
        r, c = bad
        raise DataError(f"{path}: line {lines[r]}, {columns[c]}: {_why_not_finite(cells[r, c].strip(), x[r, c])}")
    return x.astype(np.float32)


# --- .npz --------------------------------------------------------------------------------------

_NPZ_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")


def _load_npz(path, f):
    start = f.read(6)
    f.seek(0)
    if not start:
        raise DataError(f"{path}: the file is empty")
    if start == b"\x93NUMPY":
        raise DataError(f"{path}: a single .npy array, not a .npz archive (save one with np.savez(path, x=x, y=y))")
    if not start.startswith(_NPZ_SIGNATURES):
        raise DataError(f"{path}: not a .npz archive (it does not start as a zip file does)")
    try:
        archive = np.load(f, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz archive ({e})") from None
    with archive:
        keys = set(archive.files)
        xk = next((k for k in ("x", "X", "features") if k in keys), None)
        yk = next((k for k in ("y", "Y", "labels", "label") if k in keys), None)
        if xk is None or yk is None:
            raise DataError(f"{path}: expected arrays named 'x' and 'y', found {sorted(keys)}")
        size = os.fstat(f.fileno()).st_size
        (x_shape, x_bytes), (y_shape, y_bytes) = (_npz_member(path, archive.zip, k, size) for k in (xk, yk))
        if x_shape and y_shape and x_shape[0] != y_shape[0]:  # told before reading either
            raise DataError(f"{path}: x holds {x_shape[0]} samples but y holds {y_shape[0]} labels")
        x_count = math.prod(x_shape)
        need = x_bytes + y_bytes + 8 * x_count  # the arrays, and x as float64 for the checks
        available = _available_memory()
        if available is not None and need > available:
            raise DataError(f"not enough memory to load {path}: its arrays {xk!r} and {yk!r} need about "
                            f"{_size(need)}, and {_size(available)} is available")
        x, y = _npz_array(path, archive, xk), _npz_array(path, archive, yk)
    return _npz_features(path, x), _npz_labels(path, y, len(x))


def _npz_member(path, archive, key, file_size):
    """(shape, data bytes) that the .npy header of array key declares, read before the
    array is, so that sizes the archive cannot hold are refused before anything is allocated for
    them: the data must fit in the member's unpacked size, and that in what its packed bytes can
    unpack to (_files.check_member_sizes)."""
    name = key if key in archive.NameToInfo else key + ".npy"  # as NpzFile picks the member
    info = archive.getinfo(name)
    where = f"{path}: array {key!r}"
    try:
        _files.check_member_sizes(info, file_size)
    except _files.BadContent as e:
        raise DataError(f"{where}: {e}") from None
    try:
        with archive.open(name) as member:
            header = _files.read_npy_header(member)
    except _files.NotNpy:
        raise DataError(f"{where} is not a .npy array (save the data with np.savez(path, x=x, y=y))") from None
    except (_files.BadContent, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{where} cannot be read ({_one_line(e)})") from None
    held = max(info.file_size - header.offset, 0)
    if not header.dtype.hasobject and header.nbytes > held:  # (objects are refused when read)
        raise DataError(f"{where}: its header declares shape {header.shape} of {header.dtype} "
                        f"({_size(header.nbytes)}), but the archive holds {held} bytes of data for it "
                        f"(a damaged or crafted file)")
    return header.shape, header.nbytes


def _available_memory():
    """Bytes this process may still allocate, as far as the system tells (None: unknown): free
    memory and swap, less a cgroup's limit or the address-space rlimit where these are lower."""
    limits = []
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f if ":" in line)
        limits.append((int(info["MemAvailable"].split()[0]) + int(info.get("SwapFree", "0 kB").split()[0])) * 1024)
    except (OSError, KeyError, ValueError, IndexError):
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            cap = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            if cap != "max":
                limits.append(max(int(cap) - int(f.read()), 0))
    except (OSError, ValueError):
        pass
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    except (ImportError, AttributeError, ValueError, OSError):
        pass
    return min(limits) if limits else None


def _size(n):
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _one_line(message):
    return " ".join(str(message).split())


def _npz_array(path, archive, key):
    try:
        return archive[key]
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise DataError(f"{path}: array {key!r} holds Python objects (dtype object); "
                            f"save numbers (or strings, for labels)") from None
        raise DataError(f"{path}: array {key!r} cannot be read ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"{path}: array {key!r} cannot be read ({e})") from None


def _npz_features(path, x):
    if x.ndim == 0:
        raise DataError(f"{path}: x is a 0-d array (one value); it needs one row per sample")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{path}: x has dtype {x.dtype}; features must be real numbers")
    if len(x) == 0:
        raise DataError(f"{path}: x holds 0 samples")
    x = x.reshape(len(x), -1)
    if x.shape[1] == 0:
        raise DataError(f"{path}: x holds 0 features per sample")
    x = x.astype(np.float64)
    bad = _first_non_finite(x)
    if bad is not None:
        r, c = bad
        raise DataError(f"{path}: x[{r}, {c}]: {_why_not_finite(repr(float(x[r, c])), x[r, c])}")
    return x.astype(np.float32)


def _npz_labels(path, y, n):
    if y.ndim == 0:
        raise DataError(f"{path}: y is a 0-d array (one value); it needs one label per sample")
    if len(y) != n:
        raise DataError(f"{path}: x holds {n} samples but y holds {len(y)} labels")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    elif y.ndim == 2 and y.dtype.kind in "biuf" and np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all():
        y = y.argmax(axis=1)  # one-hot rows
    elif y.ndim != 1:
        raise DataError(f"{path}: y has shape {y.shape}; it needs one class id per sample (or one-hot rows)")
    if y.dtype.kind in "US":
        empty = np.flatnonzero(np.char.strip(y) == (b"" if y.dtype.kind == "S" else ""))
        if len(empty):
            raise DataError(f"{path}: y[{empty[0]}] is empty")
        return y
    if y.dtype.kind not in "biuf":
        raise DataError(f"{path}: y has dtype {y.dtype}; labels must be class ids (integers) or strings")
    return _class_ids(y, lambda i: f"{path}: y[{i}]", hint="y must hold class ids")


# --- shared checks -----------------------------------------------------------------------------

def _first_non_finite(x):
    """(row, column) of the first value of float64 x that is not finite in float32, or None."""
    bad = ~np.isfinite(x)
    bad[~bad] = np.abs(x[~bad]) > _F32_MAX
    if not bad.any():
        return None
    r, c = np.argwhere(bad)[0]
    return int(r), int(c)


def _why_not_finite(text, value):
    if np.isfinite(value):
        return f"{text} is beyond float32's range (\u00b1{_F32_MAX:.4g})"
    return f"{text} is not a finite number"


def _labels_from_text(labels, location, hint):
    """Labels read as text: class ids when every one is a number (so '1' and '1.0' are one class),
    else the words themselves."""
    try:
        values = labels.astype(np.float64)
    except ValueError:
        return labels
    return _class_ids(values, location, hint, shown=lambda i: labels[i])


def _class_ids(values, location, hint, shown=None):
    """int64 class ids from numbers; a DataError, located by location(i), when one is not an integer
    (with the hint when it looks like a continuous target)."""
    shown = shown or (lambda i: repr(values[i].item()))
    if values.dtype.kind in "biu":
        return values.astype(np.int64)
    # checked in float64: float16 whole numbers are ids like any others, but 2 ** 53 overflows
    # float16 (a RuntimeWarning on stderr); a longdouble beyond float64's range becomes inf, refused
    with np.errstate(over="ignore"):
        wide = values.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(wide) | (wide != np.round(wide)) | (np.abs(wide) > 2 ** 53))
    if len(bad):
        i = bad[0]
        why = (f"fastdl train classifies, and this looks like a continuous target ({hint})"
               if np.isfinite(values[i]) else "labels must be integers or words")
        raise DataError(f"{location(i)}: {shown(i)} is not a class id; {why}")
    return wide.astype(np.int64)


def _is_int(text):
    try:
        int(text)
        return True
    except ValueError:
        return False


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False
