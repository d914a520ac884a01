"""
What every data/<name>/prepare.py shares. The output format (read by training through np.memmap):

    train.bin, val.bin   raw uint16 token ids, native byte order, one long 1-D array each
    meta.pkl             only for character vocabularies: {'vocab_size', 'itos', 'stoi'}
    manifest.json        each file's size and digest, written before they are renamed into place
    tokenizer.json       only for a BPE trained on the text (tokenizer.train_bpe)

All outputs are written under '<name>.tmp' and renamed into place together at the end, so an
interrupted prepare never leaves a truncated train.bin that training would silently use, and the
manifest tells train.py if a prepare was stopped between two renames.

The corpora too big for memory (openwebtext, fineweb) also share, below, how documents are read (the hub
or local .txt/.jsonl/.parquet/save_to_disk data), how workers turn them into GPT-2 ids and hand them
back in order, and the one-line errors of both. What differs stays in their prepare.py: where the
end-of-text token goes and how the val split is chosen.
"""
import codecs
import collections
import contextlib
import glob
import hashlib
import json
import multiprocessing
import os
import pickle
import socket
import urllib.parse
import urllib.request

import numpy as np
from tqdm import tqdm

from configurator import UserError
from files import fault_if_full, kill_point, space_for
from tokenizer import BPE_FILE, META_FILE, get_gpt2_encoding

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
    have none, so their documents simply follow one another). A bar of the characters done goes to stderr
    when it is a terminal (tqdm's disable=None: none in logs and pipes)."""
    check_vocab_fits_uint16(tok.vocab_size)
    ids = []
    with tqdm(total=sum(map(len, docs)), desc='tokenizing', unit='char', unit_scale=True, disable=None) as bar:
        for i, doc in enumerate(docs):
            if i and tok.eot_token is not None:
                ids.append(tok.eot_token)
            ids.extend(tok.encode(doc, strict=True))
            bar.update(len(doc))
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
def atomic_outputs(out_dir, names, needed=None):
    """Yield {name: binary file open on out_dir/<name>.tmp}. When the block ends normally the files are
    fsynced and renamed over out_dir/<name>, all together; if it raises (or is interrupted) the .tmp
    files are deleted and existing outputs stay as they were. A stale .tmp from a killed run is
    overwritten, so re-running is always safe. An out_dir it had to create is removed again on failure
    (when empty): a failed prepare leaves nothing behind. A full disk is one line saying how much the files
    need (needed: bytes, when the caller knows) and where (files.space_for).

    A dataset's files (the outputs include train.bin) are one generation: before the renames, MANIFEST is
    written listing each file's size and digest, so that a prepare killed between two renames (a new
    train.bin beside an old val.bin) leaves files that do not match it, which check_manifest refuses."""
    check_out_dir(out_dir)
    with space_for(out_dir, needed):
        created = not os.path.exists(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        paths = {name: os.path.join(out_dir, name) for name in names}
        files = {}
        try:
            for name, path in paths.items():
                files[name] = open(path + '.tmp', 'wb')
            yield files
            for f in files.values():
                f.flush()
                fault_if_full(f.name)
                os.fsync(f.fileno())
                f.close()
            if 'train.bin' in names:
                write_manifest(out_dir, {name: path + '.tmp' for name, path in paths.items()})
            for i, path in enumerate(paths.values()):
                if i:
                    kill_point('prepare-renames')
                os.replace(path + '.tmp', path)
            _fsync_dir(out_dir)
        except BaseException:
            for f in files.values():
                f.close()
            for path in paths.values():
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path + '.tmp')
            if created:
                with contextlib.suppress(OSError):  # not empty: someone else writes there too; leave it
                    os.rmdir(out_dir)
            raise


MANIFEST = 'manifest.json'  # beside a dataset's files: {'files': {name: {'bytes', 'sample_sha256'}}}
DIGEST_PIECES, DIGEST_PIECE = 16, 1 << 16  # what file_digest reads: 16 evenly spaced pieces of 64 KiB


def file_digest(path):
    """SHA-256 of a file's size and of DIGEST_PIECES evenly spaced pieces of it (all of it when small): a few
    reads, so checking a 20 GB train.bin at every start costs nothing, and two generations of a dataset differ
    in it unless they are the same size and agree in every piece."""
    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, 'rb') as f:
        if size <= DIGEST_PIECES * DIGEST_PIECE:
            h.update(f.read())
        else:
            for k in range(DIGEST_PIECES):
                f.seek(k * (size - DIGEST_PIECE) // (DIGEST_PIECES - 1))
                h.update(f.read(DIGEST_PIECE))
    return h.hexdigest()


def write_manifest(out_dir, files):
    """out_dir/MANIFEST (written atomically) for {name: the path holding that file's new contents}."""
    listed = {name: {'bytes': os.path.getsize(path), 'sample_sha256': file_digest(path)}
              for name, path in files.items()}
    path = os.path.join(out_dir, MANIFEST)
    with open(path + '.tmp', 'w') as f:
        json.dump({'files': listed}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + '.tmp', path)


def check_manifest(data_dir, prepare):
    """A UserError if data_dir has a MANIFEST and its files are not the ones it lists: they come from two runs
    of a prepare (one stopped while replacing the files). Datasets prepared without a manifest (before it, or
    by nanoGPT) pass unchecked. prepare: the command that re-creates the dataset, for the message."""
    path = os.path.join(data_dir, MANIFEST)
    if not os.path.exists(path):
        return
    try:
        with open(path) as f:
            listed = json.load(f)['files']
        wanted = {name: (int(v['bytes']), v['sample_sha256']) for name, v in listed.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{path} is not a dataset manifest (JSON listing the files): re-run `{prepare}`") from None
    for name, (size, digest) in wanted.items():
        file = os.path.join(data_dir, name)
        if not os.path.isfile(file) or os.path.getsize(file) != size or file_digest(file) != digest:
            raise UserError(f"{file} is not the file {path} lists with {', '.join(n for n in wanted if n != name)}: "
                            f"the dataset's files come from different runs of its prepare (one was stopped while "
                            f"replacing them); re-run `{prepare}` (if you changed the files yourself, delete {path})")


def write_ids(f, ids):
    """Append ids to an open binary file as raw uint16; returns how many were written."""
    arr = as_uint16(ids)
    f.write(arr.data)
    return arr.size


def save_dataset(out_dir, train_ids, val_ids, meta=None, tokenizer_json=None):
    """Write out_dir/train.bin and val.bin (+ meta.pkl for a char vocabulary, tokenizer.json for a trained BPE)
    atomically. A meta.pkl or tokenizer.json that an earlier run of another kind left is removed: it would make
    the ids read in the wrong vocabulary."""
    if meta is not None:
        check_vocab_fits_uint16(meta['vocab_size'])
    vocab_files = {META_FILE: meta, BPE_FILE: tokenizer_json}
    # renamed in this order: a reader never sees new .bin files without their vocabulary
    names = [name for name, content in vocab_files.items() if content is not None] + ['train.bin', 'val.bin']
    needed = (2 * (len(train_ids) + len(val_ids)) + (len(pickle.dumps(meta)) if meta is not None else 0)
              + (len(tokenizer_json.encode()) if tokenizer_json is not None else 0))
    with atomic_outputs(out_dir, names, needed) as files:
        n_train = write_ids(files['train.bin'], train_ids)
        n_val = write_ids(files['val.bin'], val_ids)
        if meta is not None:
            pickle.dump(meta, files[META_FILE])
        if tokenizer_json is not None:
            files[BPE_FILE].write(tokenizer_json.encode('utf-8'))
    for name, content in vocab_files.items():
        stale = os.path.join(out_dir, name)
        if content is None and os.path.exists(stale):
            os.remove(stale)  # after the renames: a crash in between leaves a loud mismatch, not a silent one
            print(f"removed {stale} from an earlier run with another tokenizer")
    print(f"train.bin has {n_train:,} tokens, val.bin has {n_val:,} tokens -> {out_dir}")
    return n_train, n_val


# -----------------------------------------------------------------------------
# large corpora (openwebtext, fineweb): documents from the hub or local files, GPT-2 ids from worker processes

LOCAL_KINDS = {'.txt': 'text', '.jsonl': 'json', '.json': 'json', '.parquet': 'parquet'}  # -> datasets' loader
LOCAL_DATASET = '--dataset=<folder or glob of .txt/.jsonl/.parquet files, or a save_to_disk folder>'


def is_local(spec):
    """True when --dataset names local data rather than a Hugging Face hub dataset."""
    return (os.path.exists(os.path.expanduser(spec)) or glob.has_magic(spec) or spec.startswith(('.', '/', '~'))
            or spec.endswith(tuple(LOCAL_KINDS)))


def hub_offline():
    """True when the environment tells Hugging Face to stay offline (it then reads only its cache)."""
    return any(os.environ.get(v, '').upper() in ('1', 'ON', 'YES', 'TRUE')
               for v in ('HF_HUB_OFFLINE', 'HF_DATASETS_OFFLINE'))


def probe_hub(doing, also=''):
    """A UserError 'cannot reach <host> to <doing> (...); offline, prepare a local copy instead: --dataset=...'
    (+ also) when the hub does not answer: without the network this fails in a second rather than after
    huggingface_hub's retries (half a minute)."""
    url = urllib.parse.urlparse(os.environ.get('HF_ENDPOINT', 'https://huggingface.co'))
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=10).close()
    except OSError as e:
        raise UserError(f"cannot reach {url.hostname} to {doing} ({e}); offline, prepare a local copy "
                        f"instead: {LOCAL_DATASET}{also}") from None


def hub_error(path, doing, e):
    """The one-line error for a failure of the network, the hub or the cache while `doing` `path`."""
    return UserError(f"{doing} '{path}' from the Hugging Face hub failed ({type(e).__name__}: "
                     f"{str(e).splitlines()[0] if str(e) else ''}); a local copy works too: {LOCAL_DATASET}")


def load_hub(path, **kwargs):
    """datasets.load_dataset(path, **kwargs), with hub_error for what the network, the hub or the cache
    raise (anything else is a bug, and keeps its traceback)."""
    import datasets
    try:
        return datasets.load_dataset(path, **kwargs)
    except (OSError, datasets.exceptions.DatasetsError) as e:
        raise hub_error(path, 'loading', e) from None
    except RuntimeError as e:  # datasets >= 4 runs no loading scripts: nanoGPT #633, for openwebtext's
        if 'Dataset scripts are no longer supported' not in str(e):
            raise
        raise UserError(f"'{path}' on the Hugging Face hub is a loading script, which datasets "
                        f"{datasets.__version__} no longer runs (none since 4.0): prepare it from local files, "
                        f"{LOCAL_DATASET} (for example the Parquet conversion in the hub repo's refs/convert/parquet "
                        f"branch), or install a datasets that still runs scripts, `pip install 'datasets<4'`") from None


def load_local(spec, errors='strict', num_proc=1, streaming=False, quiet=False):
    """(documents, the files read) from local data: a folder written by save_to_disk (its 'train' split),
    or a file, folder or glob of one of LOCAL_KINDS in sorted path order (a .txt file is one document,
    .jsonl / .parquet rows are documents in their 'text' column). streaming=True reads the files only as
    the documents are consumed, with no Arrow copy in the Hugging Face cache; reading errors then come up
    while iterating (turn them into one line with read_error). quiet=True shows no progress bars (for tables
    that load in seconds, where a bar would only come before an error line)."""
    import datasets
    path = os.path.expanduser(spec)
    if os.path.isdir(path) and any(os.path.exists(os.path.join(path, f)) for f in ('state.json', 'dataset_dict.json')):
        ds = datasets.load_from_disk(path)
        if isinstance(ds, datasets.DatasetDict):
            if 'train' not in ds:
                raise UserError(f"{spec} has splits {list(ds)} but no 'train' split to prepare")
            ds = ds['train']
        return ds, []
    files = find_files(spec, exts=tuple(LOCAL_KINDS))
    kinds = {LOCAL_KINDS.get(os.path.splitext(f)[1]) for f in files}
    if None in kinds or len(kinds) > 1:
        raise UserError(f"{spec} gives {len(files)} files of types {sorted({os.path.splitext(f)[1] for f in files})}; "
                        f"use one type at a time: .txt (a document per file), .jsonl or .parquet (a 'text' column)")
    kind = kinds.pop()
    options = {'text': {'sample_by': 'document', 'encoding_errors': errors},
               # the json loader hands the bytes to pyarrow unchecked when the encoding is spelled 'utf-8';
               # any other spelling makes it decode them in Python first, honouring errors
               'json': {'encoding': 'utf_8', 'encoding_errors': errors},
               'parquet': {}}[kind]
    loaders = min(num_proc, len(files))
    if streaming:
        options['streaming'] = True
    elif loaders > 1:
        options['num_proc'] = loaders
    verbosity, bars = datasets.logging.get_verbosity(), datasets.utils.are_progress_bars_disabled()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # its "Failed to load JSON": read_error says more
    if quiet:
        datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(kind, data_files=files, split='train', **options)
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as e:  # unreadable files (pyarrow: ValueError)
        raise read_error(spec, files, e) from None
    finally:
        datasets.logging.set_verbosity(verbosity)
        if quiet and not bars:
            datasets.enable_progress_bars()
    return ds, files


def read_error(spec, files, e):
    """The one-line error for local files that datasets could not read (e: an OSError, a ValueError such as
    pyarrow's errors and UnicodeDecodeError, or a DatasetsError). Text that is not UTF-8, the likeliest
    cause, is named by file and byte offset."""
    find_bad_utf8([f for f in files if not f.endswith('.parquet')])  # raises if it finds such text
    find_bad_jsonl([f for f in files if f.endswith('.jsonl')])  # and this if a line is not a JSON object
    return UserError(f"could not read {spec} ({_innermost(e)})")


def find_bad_utf8(files):
    for f in files:
        check_utf8(f)


def find_bad_jsonl(files):
    """A UserError naming the file and line of the first line of these .jsonl files that is not a JSON object."""
    for path in files:
        with open(path, encoding='utf-8', errors='replace') as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line.rstrip('\r\n'))
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{n}: not a JSON object ({e.msg}, column {e.colno}); every line of a "
                                    f".jsonl file must be one") from None
                if not isinstance(obj, dict):
                    raise UserError(f"{path}:{n}: a JSON {type(obj).__name__}, not an object; every line of a "
                                    f".jsonl file must be one")


def _innermost(e):
    """'Type: message' of the root cause of e (through datasets' wrappers and worker tracebacks)."""
    while (e.__cause__ or e.__context__) is not None:
        e = e.__cause__ or e.__context__
    lines = [line for line in str(e).splitlines() if line.strip()]
    return lines[-1].strip() if type(e).__name__ == 'RemoteTraceback' and lines else f"{type(e).__name__}: {e}"


def gpt2_ids(texts, eot_before=False):
    """One uint16 array: every text's GPT-2 encode_ordinary ids with the end-of-text token 50256 after it
    (nanoGPT's openwebtext) or before it (build-nanogpt's fineweb). A None text is an empty document. The
    encoding is built once per process; forked workers inherit the parent's."""
    enc = get_gpt2_encoding()
    ids = []
    for text in texts:
        if eot_before:
            ids.append(enc.eot_token)
        ids.extend(enc.encode_ordinary(text or ''))
        if not eot_before:
            ids.append(enc.eot_token)
    return np.array(ids, dtype=np.uint16)


def in_workers(work, tasks, num_proc, initializer=None, initargs=()):
    """Yield work(task) for every task, in order, computed by num_proc worker processes (in this one when
    num_proc is 1). Tasks go out as results come back, at most two per worker ahead: Pool.imap would read
    `tasks`, which may be a stream of the whole corpus, into memory as fast as it can. Use it under
    contextlib.closing, so that the workers stop however the loop over it ends."""
    if num_proc == 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(work, tasks)
        return
    pool = multiprocessing.Pool(num_proc, initializer, initargs)
    try:
        pending = collections.deque()
        for task in tasks:
            pending.append(pool.apply_async(work, (task,)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
    finally:
        pool.terminate()  # all results are in (or we are failing): stop the workers now
        pool.join()
