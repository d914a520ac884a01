"""
What every data/<name>/prepare.py shares. The output format (read by training through np.memmap):

    train.bin, val.bin   raw uint16 token ids, native byte order, one long 1-D array each
    meta.pkl             only for character vocabularies: {'vocab_size', 'itos', 'stoi'}

All outputs are written under '<name>.tmp' and renamed into place together at the end, so an
interrupted prepare never leaves a truncated train.bin that training would silently use.
"""
import codecs
import contextlib
import glob
import json
import os
import pickle
import urllib.request

import numpy as np

from configurator import UserError

UINT16_VOCAB_LIMIT = 2 ** 16  # a vocabulary must have fewer tokens than this (the repo's bound for uint16 .bin files)
ERRORS = ('strict', 'replace', 'ignore')  # choices for --errors: what to do with bytes that are not UTF-8


# -----------------------------------------------------------------------------
# reading input

def check_errors(errors):
    if errors not in ERRORS:
        raise UserError(f"--errors={errors!r} is not one of {', '.join(ERRORS)}")


def _not_utf8(path, byte, offset):
    return UserError(f"{path} is not UTF-8 text: byte 0x{byte:02x} at byte offset {offset} cannot be decoded; "
                     f"convert the file to UTF-8, or pass --errors=replace to read undecodable bytes as U+FFFD")


def read_text(path, errors='strict'):
    """The whole file as str, decoded as UTF-8. Bytes are kept as they are (no newline translation),
    so a file round-trips through encode/decode exactly."""
    check_errors(errors)
    if not os.path.isfile(path):
        raise UserError(f"{path}: no such file")
    with open(path, 'rb') as f:
        data = f.read()
    try:
        return data.decode('utf-8', errors)
    except UnicodeDecodeError as e:
        raise _not_utf8(path, data[e.start], e.start) from None


def read_jsonl(path, fields):
    """[(line number, record)] of a jsonl file: each non-blank line a JSON object holding `fields`, a dict
    {name: type} (e.g. {'prompt': str}); a record keeps those fields only. A line that is not such an object
    is a one-line error naming the file and the line."""
    wanted = ', '.join(f"{name} ({kind.__name__})" for name, kind in fields.items())
    records = []
    for n, line in enumerate(read_text(path).split('\n'), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: not a JSON object ({e.msg}); every line must be one, with {wanted}") from None
        bad = ([name for name, kind in fields.items() if not isinstance(obj.get(name), kind)]
               if isinstance(obj, dict) else list(fields))
        if bad:
            raise UserError(f"{path}:{n}: missing or mistyped field(s) {', '.join(bad)}: every line needs {wanted}")
        records.append((n, {name: obj[name] for name in fields}))
    return records


def check_utf8(path, chunk_size=1 << 24):
    """Raise read_text's one-line error if the file is not UTF-8; reads in chunks, so any size is fine."""
    decoder = codecs.getincrementaldecoder('utf-8')()
    offset = 0  # bytes fed to the decoder so far
    with open(path, 'rb') as f:
        while True:
            data = f.read(chunk_size)
            pending = len(decoder.getstate()[0])  # an unfinished character carried over from the last chunk
            try:
                decoder.decode(data, final=not data)
            except UnicodeDecodeError as e:
                raise _not_utf8(path, e.object[e.start], offset - pending + e.start) from None
            if not data:
                return
            offset += len(data)


def find_files(spec, exts):
    """The input files spec names, sorted by path: a file; a folder (every file under it whose name ends
    in one of exts, recursively, hidden files skipped); or a glob pattern ('**' recurses)."""
    spec = os.path.expanduser(spec)
    if os.path.isfile(spec):
        return [spec]
    if os.path.isdir(spec):
        files = []
        for root, dirs, names in os.walk(spec):
            dirs[:] = [d for d in dirs if not d.startswith('.')]  # no .git, .cache, ...
            files += [os.path.join(root, n) for n in names if n.endswith(tuple(exts)) and not n.startswith('.')]
        if not files:
            raise UserError(f"{spec}: no {' / '.join(exts)} files in this folder")
    elif glob.has_magic(spec):
        files = [p for p in glob.glob(spec, recursive=True) if os.path.isfile(p)]
        if not files:
            raise UserError(f"{spec}: no files match this pattern")
    else:
        raise UserError(f"{spec}: no such file or folder")
    return sorted(files)


def read_or_download(path, url, timeout=30):
    """read_text(path); when the file is missing, download it from url first (the online path)."""
    if not os.path.exists(path):
        print(f"{path} is missing, downloading {url}")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                data = response.read()
        except OSError as e:  # URLError, timeouts, refused connections
            raise UserError(f"{path} is missing and downloading it from {url} failed ({e}); put the "
                            f"file there by hand (in a clone: git checkout -- {path})") from None
        name = os.path.basename(path)
        with atomic_outputs(os.path.dirname(path) or '.', [name]) as files:
            files[name].write(data)
    return read_text(path)


# -----------------------------------------------------------------------------
# text -> ids

def split_documents(docs, val_fraction):
    """Cut a list of documents at the character where the last val_fraction of all the text begins:
    -> (train_docs, val_docs). The document the cut falls in is split in two. For a single document
    this is nanoGPT's shakespeare split: text[:int(n * 0.9)], text[int(n * 0.9):]."""
    if not 0 < val_fraction < 1:
        raise UserError(f"--val_fraction={val_fraction} must be between 0 and 1 (exclusive)")
    cut = int(sum(map(len, docs)) * (1 - val_fraction))
    train, val, seen = [], [], 0
    for doc in docs:
        if seen + len(doc) <= cut:
            train.append(doc)
        elif seen >= cut:
            val.append(doc)
        else:
            train.append(doc[:cut - seen])
            val.append(doc[cut - seen:])
        seen += len(doc)
    if cut == 0 or cut == seen:
        raise UserError(f"only {seen} characters of text: too little to split into train and val "
                        f"with --val_fraction={val_fraction}")
    return train, val


def encode_documents(tok, docs):
    """One uint16 array: each document's ids, with tok.eot_token between documents (char vocabularies
    have none, so their documents simply follow one another)."""
    check_vocab_fits_uint16(tok.vocab_size)
    ids = []
    for i, doc in enumerate(docs):
        if i and tok.eot_token is not None:
            ids.append(tok.eot_token)
        ids.extend(tok.encode(doc))
    return np.array(ids, dtype=np.uint16)


def check_vocab_fits_uint16(vocab_size):
    if vocab_size >= UINT16_VOCAB_LIMIT:
        raise UserError(f"a vocabulary of {vocab_size:,} tokens does not fit the uint16 .bin files (it must have "
                        f"fewer than {UINT16_VOCAB_LIMIT:,}); use GPT-2 BPE (--tokenizer=gpt2) or text with "
                        f"fewer distinct characters")


def as_uint16(ids):
    """ids (list or array) as a uint16 array, refusing ids that would wrap around."""
    arr = np.asarray(ids)
    if arr.dtype != np.uint16:
        if arr.size and (arr.min() < 0 or arr.max() >= 2 ** 16):
            raise UserError(f"token ids must be in 0..65535 to be stored as uint16, got {arr.min()}..{arr.max()}")
        arr = arr.astype(np.uint16)
    return np.ascontiguousarray(arr)


# -----------------------------------------------------------------------------
# writing outputs

def _fsync_dir(path):
    # make the renames themselves durable; not possible (nor needed) on every OS
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_out_dir(out_dir):
    """A UserError if out_dir, or the nearest existing folder above it, is a regular file: os.makedirs
    would stop there with a FileExistsError traceback. atomic_outputs checks it; the prepare scripts that
    tokenize for long check it first too (creating nothing), so a bad --out_dir fails at once."""
    path = os.path.abspath(out_dir)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise UserError(f"--out_dir={out_dir} is (or lies under) an existing file, not a folder: give the folder "
                        f"to write train.bin / val.bin into, e.g. --out_dir=data/mybook")


@contextlib.contextmanager
def atomic_outputs(out_dir, names):
    """Yield {name: binary file open on out_dir/<name>.tmp}. When the block ends normally the files are
    fsynced and renamed over out_dir/<name>, all together; if it raises (or is interrupted) the .tmp
    files are deleted and existing outputs stay as they were. A stale .tmp from a killed run is
    overwritten, so re-running is always safe."""
    check_out_dir(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in names}
    files = {}
    try:
        for name, path in paths.items():
            files[name] = open(path + '.tmp', 'wb')
        yield files
        for f in files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        for path in paths.values():
            os.replace(path + '.tmp', path)
        _fsync_dir(out_dir)
    except BaseException:
        for f in files.values():
            f.close()
        for path in paths.values():
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + '.tmp')
        raise


def write_ids(f, ids):
    """Append ids to an open binary file as raw uint16; returns how many were written."""
    arr = as_uint16(ids)
    f.write(arr.data)
    return arr.size


def save_dataset(out_dir, train_ids, val_ids, meta=None):
    """Write out_dir/train.bin and val.bin (+ meta.pkl for a char vocabulary) atomically. Without meta,
    a meta.pkl left by an earlier char-level run is removed: it would make the GPT-2 ids read as chars."""
    if meta is not None:
        check_vocab_fits_uint16(meta['vocab_size'])
    # renamed in this order: a reader never sees new .bin files without their meta.pkl
    names = (['meta.pkl'] if meta is not None else []) + ['train.bin', 'val.bin']
    with atomic_outputs(out_dir, names) as files:
        n_train = write_ids(files['train.bin'], train_ids)
        n_val = write_ids(files['val.bin'], val_ids)
        if meta is not None:
            pickle.dump(meta, files['meta.pkl'])
    stale_meta = os.path.join(out_dir, 'meta.pkl')
    if meta is None and os.path.exists(stale_meta):
        os.remove(stale_meta)  # after the renames: a crash in between leaves a loud mismatch, not a silent one
        print(f"removed {stale_meta} from an earlier character-level run")
    print(f"train.bin has {n_train:,} tokens, val.bin has {n_val:,} tokens -> {out_dir}")
    return n_train, n_val
