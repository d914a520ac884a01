"""
FineWeb-Edu as GPT-2 tokens, as build-nanogpt's fineweb.py prepares it:

    python data/fineweb/prepare.py                                # stream sample-10BT from the Hugging Face hub
    python data/fineweb/prepare.py --max_tokens=1_000_000_000     # only its first 1B tokens
    python data/fineweb/prepare.py --dataset='fineweb/*.parquet'  # local files: works offline

The hub path streams HuggingFaceFW/fineweb-edu, config sample-10BT, split train, with datasets'
streaming=True: nothing is cached, only train.bin / val.bin are written (~10B tokens, ~20GB at 2 bytes
a token; --max_tokens stops earlier). --dataset=<folder or glob> reads local files instead, in sorted
path order: .parquet or .jsonl with a 'text' column (e.g. the parquet files of the hub's sample/10BT/),
.txt (a document per file), or a save_to_disk folder.

As build-nanogpt, every document is [50256] + encode_ordinary(text): the end-of-text token comes BEFORE
each document (nanoGPT's openwebtext puts it after). The split is build-nanogpt's too, with no shuffle:
val.bin is exactly the first --val_tokens tokens of the stream (its val shard edufineweb_val_000000:
100M tokens, the last document cut where the count is reached) and train.bin all the tokens after them
(its train shards, concatenated), up to --max_tokens in all. So the split depends only on the stream's
order, never on --num_proc or --shard_size.

Same pipeline as data/openwebtext/prepare.py (data/common.py): the parent reads the stream in pieces of
about --shard_size characters, --num_proc worker processes tokenize them, and the parent appends the
arrays in order to val.bin.tmp / train.bin.tmp, renamed into place only at the end. Memory holds a few
pieces, never the corpus.
"""
import contextlib
import functools
import os
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repo root, as data/__init__.py says
# nothing here uses torch, but datasets' IterableDataset imports it when it is installed (~2.5 s of start-up, for
# an epoch counter in torch shared memory): USE_TORCH=0 tells datasets not to
os.environ.setdefault('USE_TORCH', '0')
from tqdm import tqdm

from configurator import UserError, configure, require
from data.common import (atomic_outputs, check_errors, check_out_dir, gpt2_ids, hub_error,
                         hub_offline, in_workers, is_local, load_hub, load_local, probe_hub, read_error, write_ids)
from tokenizer import get_gpt2_encoding

dataset = 'HuggingFaceFW/fineweb-edu'  # the hub dataset (streamed), or local data: a folder / glob of .parquet,
                                       # .jsonl, .txt files, or a save_to_disk folder
subset = 'sample-10BT'   # the hub dataset's config (datasets' name=): sample-10BT, sample-100BT, ... ignored locally
out_dir = _HERE          # where train.bin / val.bin go
val_tokens = 100_000_000  # val.bin = the first this many tokens of the stream (build-nanogpt's val shard)
max_tokens = 0           # stop after this many tokens, val + train; 0: the whole stream (sample-10BT: ~10B)
num_proc = min(8, os.cpu_count() or 1)  # tokenizing worker processes
shard_size = 2 ** 20     # documents go to a worker in pieces of about this many characters: worth the hop
errors = 'strict'        # local .txt / .jsonl that are not UTF-8: 'replace' reads bad bytes as U+FFFD
_BATCH = 1000            # documents read from the dataset at a time


# -----------------------------------------------------------------------------
# documents in: a stream, in order

def open_stream():
    """(an iterable dataset of the documents in order, the local files it reads, or None for the hub)."""
    if is_local(dataset):
        return load_local(dataset, errors, streaming=True)
    if hub_offline():  # streaming never reads the Hugging Face cache, so offline mode cannot work
        raise UserError(f"HF_HUB_OFFLINE / HF_DATASETS_OFFLINE is set, but streaming '{dataset}' from the Hugging "
                        f"Face hub needs the network; offline, prepare local files instead: --dataset=<folder or "
                        f"glob of .parquet/.jsonl files with a 'text' column>")
    probe_hub(f"stream '{dataset}'")
    return load_hub(dataset, name=subset, split='train', streaming=True), None


def texts(ds, files):
    """The 'text' of every document, in order. Reading is lazy, so the errors of bad input (a local file
    that is not UTF-8 or not parquet, a lost connection) come up here, as one line."""
    import datasets
    bad = (OSError, ValueError, datasets.exceptions.DatasetsError) if files is not None else \
        (OSError, datasets.exceptions.DatasetsError)  # on the hub, a ValueError would be a bug
    batches = iter(ds.iter(batch_size=_BATCH))
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except bad as e:
            raise (read_error(dataset, files, e) if files is not None else hub_error(dataset, 'streaming', e)) from None
        if 'text' not in batch:
            raise UserError(f"{dataset} has no 'text' column (columns: {', '.join(batch)})")
        wrong = next((t for t in batch['text'] if not isinstance(t, (str, type(None)))), None)
        if wrong is not None:
            raise UserError(f"{dataset}: the 'text' column holds {type(wrong).__name__} values, not strings")
        yield from batch['text']


def pieces(docs):
    """The documents in consecutive lists of about shard_size characters."""
    piece, size = [], 0
    for text in docs:
        piece.append(text)
        size += len(text or '')
        if size >= shard_size:
            yield piece
            piece, size = [], 0
    if piece:
        yield piece


# -----------------------------------------------------------------------------
# tokens out: val.bin the first val_tokens, train.bin the rest

def write_stream(ds, files):
    """Tokenize the stream in the workers and append the ids in order: the first val_tokens to val.bin, the
    rest to train.bin, up to max_tokens in all; both files renamed into place together at the end."""
    n = {'val': 0, 'train': 0}
    t0 = time.time()
    work = functools.partial(gpt2_ids, eot_before=True)
    # the bar is drawn only when stderr is a terminal, and closed (its line ended) before an error line can follow it
    with tqdm(total=max_tokens or None, unit='tok', unit_scale=True, desc=f'tokenizing ({num_proc} proc)',
              disable=None) as bar, \
            atomic_outputs(out_dir, ['train.bin', 'val.bin']) as out, \
            contextlib.closing(in_workers(work, pieces(texts(ds, files)), num_proc)) as results:
        for ids in results:
            if max_tokens:
                ids = ids[:max_tokens - n['val'] - n['train']]
            cut = val_tokens - n['val']  # what val still needs; the rest of the piece is train
            n['val'] += write_ids(out['val.bin'], ids[:cut])
            n['train'] += write_ids(out['train.bin'], ids[cut:])
            bar.update(len(ids))
            if max_tokens and n['val'] + n['train'] == max_tokens:
                break  # closing the workers' generator stops them and the stream
        if n['train'] == 0:  # raised inside: no outputs are written
            raise UserError(f"{dataset} gave {n['val']:,} tokens, all of them val (--val_tokens={val_tokens:,}): "
                            f"lower --val_tokens so that train.bin gets the rest")
    dt = time.time() - t0
    total = n['val'] + n['train']
    print(f"val.bin has the first {n['val']:,} tokens, train.bin the other {n['train']:,}")
    print(f"{total:,} tokens in {dt:.2f}s: {total / dt:,.0f} tokens/s with num_proc={num_proc} -> {out_dir}")


if __name__ == '__main__':
    configure(globals())
    check_errors(errors)
    require(globals(), 'num_proc', 'shard_size', 'val_tokens', at_least=1)
    require(globals(), 'max_tokens', at_least=0)
    if max_tokens and max_tokens <= val_tokens:
        raise UserError(f"--max_tokens={max_tokens:,} leaves nothing for train.bin after --val_tokens={val_tokens:,}: "
                        f"raise it, or lower --val_tokens")
    check_out_dir(out_dir)
    get_gpt2_encoding()  # built before the workers start, so forked workers share it
    write_stream(*open_stream())
