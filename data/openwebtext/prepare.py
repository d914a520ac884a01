"""
OpenWebText (or any large corpus) as GPT-2 tokens, as nanoGPT's openwebtext/prepare.py:

    python data/openwebtext/prepare.py                              # the Hugging Face hub dataset
    python data/openwebtext/prepare.py --dataset='corpus/*.jsonl'   # a local copy: works offline

--dataset is 'openwebtext' (or another hub name), or a local folder / glob of .txt files (one
document per file), .jsonl or .parquet files (a 'text' column), or a folder written by
datasets' save_to_disk. As nanoGPT: the train split, train_test_split(test_size=0.0005,
seed=2357, shuffle=True), val = the test part; every document is encode_ordinary(text) + [50256].

The pipeline streams: each split is cut into contiguous shards of documents, --num_proc worker
processes tokenize whole shards and hand back one uint16 array each, and the parent appends them,
in order, to train.bin.tmp / val.bin.tmp; the two files are renamed into place only at the end.
Memory holds a few shards, never the corpus. (nanoGPT: ~9B train tokens, 17GB train.bin.)
The reading, the tokenizing workers and the writing live in data/common.py, shared with
data/fineweb/prepare.py; what is nanoGPT's (the split, eot after each document) is here.
"""
import contextlib
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repo root, as data/__init__.py says
import numpy as np
from tqdm import tqdm

from configurator import UserError, configure
from data.common import (atomic_outputs, check_errors, check_out_dir, find_bad_utf8, gpt2_ids,
                         hub_offline, in_workers, is_local, load_hub, load_local, probe_hub, write_ids)
from tokenizer import get_gpt2_encoding

dataset = 'openwebtext'  # hub name, or a local folder / glob of .txt, .jsonl, .parquet, or a save_to_disk folder
out_dir = _HERE          # where train.bin / val.bin go
num_proc = min(8, os.cpu_count() or 1)  # tokenizing worker processes (and loading processes for many files)
test_size = 0.0005       # fraction of documents for val
seed = 2357              # the shuffle before the split
shards = 1024            # each split is tokenized and written in at most this many pieces (as nanoGPT) ...
shard_size = 2 ** 20     # ... of at least this many bytes of text: a piece must be worth a hop to a worker
errors = 'strict'        # local .txt / .jsonl that are not UTF-8: 'replace' reads bad bytes as U+FFFD


# -----------------------------------------------------------------------------
# documents in (how: data/common.py; here, nanoGPT's split)

def load_train(name):
    """The hub dataset's train split, downloaded whole into the Hugging Face cache."""
    if not hub_offline():  # offline, datasets reads its cache: nothing to probe
        probe_hub(f"download '{name}'", " (or set HF_DATASETS_OFFLINE=1 to use one in the Hugging Face cache)")
    return load_hub(name, num_proc=num_proc, **script_options())['train']  # nanoGPT: ~54GB in the huggingface cache


def script_options():
    """What load_dataset needs to run a dataset's loading script, as the hub's openwebtext long was: datasets
    2.16 to 3.x run one only with trust_remote_code=True; 4.0 and later run none (load_hub says what to do)."""
    import datasets
    version = tuple(int(part) for part in datasets.__version__.split('.')[:2])
    return {'trust_remote_code': True} if (2, 16) <= version < (4, 0) else {}


def split_rows(n):
    """nanoGPT's split of n documents -> {'train': row numbers, 'val': row numbers}, both int64 arrays in
    shuffled order. datasets' own train_test_split, run on a stand-in of the row numbers: its shuffle
    depends only on n and the seed, and this writes no index cache files next to the user's data."""
    import datasets
    rows = datasets.Dataset.from_dict({'row': np.arange(n)})
    split = rows.train_test_split(test_size=test_size, seed=seed, shuffle=True, keep_in_memory=True)
    return {'train': np.asarray(split['train'].with_format('numpy')['row']),
            'val': np.asarray(split['test'].with_format('numpy')['row'])}


def load_splits():
    """-> (documents: a Dataset with only a 'text' column, {'train': rows, 'val': rows} in nanoGPT's order,
    the local files read, if any)."""
    if not 0 < test_size < 1:
        raise UserError(f"--test_size={test_size} must be between 0 and 1 (exclusive)")
    ds, files = load_local(dataset, errors, num_proc) if is_local(dataset) else (load_train(dataset), [])
    if 'text' not in ds.column_names:
        raise UserError(f"{dataset} has no 'text' column (columns: {', '.join(ds.column_names)})")
    if getattr(ds.features['text'], 'dtype', None) not in ('string', 'large_string'):
        raise UserError(f"{dataset}: the 'text' column holds {ds.features['text']}, not strings")
    if len(ds) < 2:
        raise UserError(f"{dataset} has {len(ds)} document(s); a train and a val split need at least 2")
    return ds.select_columns(['text']), split_rows(len(ds)), files


# -----------------------------------------------------------------------------
# tokens out: workers tokenize whole shards; the parent only appends arrays to the files

_worker = {}  # per process, set once by _init_worker: the documents and the split rows


def _init_worker(docs, splits):
    _worker.update(docs=docs, splits=splits)  # under fork both come ready-made


def tokenize_shard(task):
    """(split, start, stop) -> (split, uint16 array): the documents at positions start..stop-1 of the
    split's shuffled order, each encode_ordinary(text) + [eot], concatenated."""
    split, start, stop = task
    rows = _worker['splits'][split][start:stop]
    return split, gpt2_ids(_worker['docs'][rows]['text'])


def shard_bounds(n, k):
    """Contiguous [start, stop) ranges covering 0..n in min(k, n) near-equal pieces."""
    k = max(1, min(k, n))
    return [(i * n // k, (i + 1) * n // k) for i in range(k)]


def plan_shards(docs, splits):
    """[(split, start, stop)]: every split cut into up to `shards` pieces of about shard_size bytes or more,
    their number a multiple of num_proc so that the workers finish together. Rows are in shuffled order,
    so equal row counts are close to equal amounts of text."""
    text_bytes = docs.data.nbytes  # size of the Arrow text column, read off its buffers (nothing is loaded)
    tasks = []
    for name, rows in splits.items():
        k = int(text_bytes * len(rows) / len(docs) // shard_size)
        k = min(shards, -(-k // num_proc) * num_proc)  # k rounded up to a multiple of num_proc
        tasks += [(name, start, stop) for start, stop in shard_bounds(len(rows), k)]
    return tasks


def write_splits(docs, splits):
    """Tokenize every shard (in worker processes when num_proc > 1) and append the arrays, in order,
    to out_dir/<split>.bin.tmp; rename both into place at the end."""
    tasks = plan_shards(docs, splits)
    print(f"{len(tasks):,} shards: " + ', '.join(f"{sum(t[0] == name for t in tasks):,} {name}" for name in splits))
    counts = dict.fromkeys(splits, 0)
    t0 = time.time()
    # the bar is drawn only when stderr is a terminal, and closed (its line ended) before an error line can follow it
    with atomic_outputs(out_dir, [f'{name}.bin' for name in splits]) as files, \
            contextlib.closing(in_workers(tokenize_shard, tasks, num_proc, _init_worker, (docs, splits))) as results, \
            tqdm(results, total=len(tasks), unit='shard', desc=f'tokenizing ({num_proc} proc)', disable=None) as bar:
        for name, arr in bar:
            counts[name] += write_ids(files[f'{name}.bin'], arr)
    dt = time.time() - t0
    for name, n in counts.items():
        print(f"{name}.bin has {n:,} tokens ({len(splits[name]):,} documents)")
    total = sum(counts.values())
    print(f"{total:,} tokens in {dt:.2f}s: {total / dt:,.0f} tokens/s with num_proc={num_proc} -> {out_dir}")


if __name__ == '__main__':
    configure(globals())
    check_errors(errors)
    if num_proc < 1 or shards < 1 or shard_size < 1:
        raise UserError("--num_proc, --shards and --shard_size must be at least 1")
    check_out_dir(out_dir)
    get_gpt2_encoding()  # built before the workers start, so forked workers share it
    docs, splits, files = load_splits()
    print(f"{len(docs):,} documents: {len(splits['train']):,} train, {len(splits['val']):,} val")
    try:
        write_splits(docs, splits)
    except UnicodeDecodeError:  # undecodable text that got past the loader: say where it is
        find_bad_utf8(files)
        raise
