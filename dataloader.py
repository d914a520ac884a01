"""
Batches from a prepared dataset: the uint16 token files train.bin / val.bin (data/<name>/prepare.py writes
them), with an optional answer mask beside each, read as read-only memmaps.

Batches are a pure function of (seed, step): step s draws its windows from a generator seeded by (seed, s),
and splits them across ranks and micro-steps. The same config therefore sees the same data whatever the
world size, and a resumed run replays exactly the batches it would have seen had it never stopped. Eval
batches come from a stream of their own, the same at every eval and for every world size.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from configurator import UserError
from data.common import check_manifest
from tokenizer import dataset_dir

EVAL_STREAM = 0x5EED_E7A1  # keeps eval windows independent of the training steps' windows


def open_split(data_dir, split):
    """train.bin / val.bin as a read-only uint16 memmap. Opened anew for every batch: a long-lived
    np.memmap keeps every page it touched resident, which looks like a memory leak on big data."""
    return np.memmap(os.path.join(data_dir, f'{split}.bin'), dtype=np.uint16, mode='r')


def check_dataset(dataset, block_size):
    """The data folder for `dataset`, after checking both splits exist, are whole uint16 tokens and hold
    more than one window, and that they are one generation (the manifest the prepare wrote, if any)."""
    data_dir = dataset_dir(dataset)
    for split in ('train', 'val'):
        path = os.path.join(data_dir, f'{split}.bin')
        if not os.path.isfile(path):
            raise UserError(f"{path} not found: prepare the dataset first, e.g. "
                            f"`python data/{os.path.basename(dataset)}/prepare.py`")
        size = os.path.getsize(path)
        if size % 2:  # np.memmap would say only "not a multiple of the data-type size", naming no file
            raise UserError(f"{path} has an odd size ({size} bytes), so it is not whole uint16 "
                            f"tokens: it is truncated or not a token file; re-run the dataset's prepare.py (e.g. "
                            f"`python data/{os.path.basename(dataset)}/prepare.py`)")
        n_tokens = size // 2
        mask_path = os.path.join(data_dir, f'{split}_mask.bin')
        if os.path.exists(mask_path) and os.path.getsize(mask_path) != n_tokens:
            raise UserError(f"{mask_path} has {os.path.getsize(mask_path)} bytes but {path} has {n_tokens} "
                            f"tokens: they must be written together; re-run the dataset's prepare.py")
        if n_tokens <= block_size + 1:
            raise UserError(f"{path} holds {n_tokens} tokens, too few for one window of block_size "
                            f"{block_size} (+1 target): prepare more text or lower block_size")
    check_manifest(data_dir, f"python data/{os.path.basename(dataset)}/prepare.py")
    return data_dir


def has_answer_masks(data_dir):
    """Whether the dataset's targets hold -1s: a train_mask.bin beside train.bin (read_windows)."""
    return os.path.exists(os.path.join(data_dir, 'train_mask.bin'))


def answer_share(data_dir, block_size):
    """The share of train.bin's targets that count in a window of block_size (answered_targets over 256 fixed
    windows; 1.0 without a mask): with masked_targets only those go through lm_head, which the MFU's FLOP count
    follows."""
    mask_path = os.path.join(data_dir, 'train_mask.bin')
    if not os.path.exists(mask_path):
        return 1.0
    mask = np.memmap(mask_path, dtype=np.uint8, mode='r')
    offsets = window_offsets(0, 0, 256, mask.size, block_size)
    share = float(answered_targets(mask, offsets[:, None] + np.arange(block_size + 1)).mean())
    if share == 0:  # every loss would be a mean over nothing: NaN, read as a diverged run
        raise UserError(f"no answer in {data_dir} fits in a window of block_size {block_size} with its whole prompt: "
                        f"raise block_size to the length the dataset was prepared for")
    return share


def answered_targets(mask, positions):
    """(B, T) bool: which next-token targets of the windows at `positions` (B, T+1) count, by an answer mask (uint8,
    one byte per token: an example is its prompt's 0s, then its answer's 1s). A target counts where it is an answer
    token whose whole prompt is in the window: an example starts where a 0 follows a 1 (or at the file's start), and
    an answer before the window's first start belongs to a prompt cut off at the window's left edge, which no
    model could answer (about half the answer tokens of a random 128-token window of data/tldr)."""
    window, offsets = mask[positions], positions[:, 0]  # (B, T+1), (B,)
    before = np.where(offsets > 0, mask[np.maximum(offsets - 1, 0)], 1)  # (B,) the token before each window
    starts = (window == 0) & (np.concatenate([before[:, None], window[:, :-1]], axis=1) == 1)
    begun = np.cumsum(starts[:, :-1], axis=1) > 0  # (B, T): an example began at or before input position t
    return (window[:, 1:] == 1) & begun


def window_offsets(seed, step, count, n_tokens, block_size, stream=()):
    """`count` window starts in [0, n_tokens - block_size), from a generator seeded by (seed, step)."""
    rng = np.random.default_rng([seed, *stream, step])
    return rng.integers(0, n_tokens - block_size, size=count)


def read_windows(data_dir, split, offsets, block_size, vocab_size):
    """
    Inputs and next-token targets at the given offsets: two int64 numpy arrays (B, block_size).
    An optional <split>_mask.bin beside the tokens (uint8, one byte per token) marks which tokens
    count as targets: where it is 0, or where the window cut off the prompt that the answer answers
    (answered_targets), the target becomes -1, which the loss ignores. This is how a task trains only on
    answers it could give (e.g. data/adder, data/tldr) while the token stream stays plain uint16.
    """
    data = open_split(data_dir, split)
    positions = offsets[:, None] + np.arange(block_size + 1)  # (B, T+1)
    windows = data[positions].astype(np.int64)
    top = windows.max()
    if top >= vocab_size:
        raise UserError(f"token id {top} in {data_dir}/{split}.bin does not fit the model's vocab_size "
                        f"{vocab_size}: the data was prepared with another tokenizer than the model's")
    x, y = np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])
    mask_path = os.path.join(data_dir, f'{split}_mask.bin')
    if os.path.exists(mask_path):
        y[~answered_targets(np.memmap(mask_path, dtype=np.uint8, mode='r'), positions)] = -1
    return x, y


def to_device(x, y, device):
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    if device.startswith('cuda'):  # pinned host memory lets the copy overlap with compute
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def train_batches(data_dir, *, seed, start_step, batch_size, block_size, grad_accum, micro_steps, rank,
                  vocab_size, device):
    """
    Yield (x, y) micro-batches for steps start_step, start_step + 1, ...: `micro_steps` per step on
    this rank. Step s draws grad_accum * batch_size windows (grad_accum is the global count, over all
    ranks) and rank r takes micro-batches r * micro_steps ... (r + 1) * micro_steps - 1 of them.
    A background thread reads the next micro-batch while the current one is being used.
    """
    n_tokens = os.path.getsize(os.path.join(data_dir, 'train.bin')) // 2

    def load(step, micro):
        offsets = window_offsets(seed, step, grad_accum * batch_size, n_tokens, block_size)
        j = rank * micro_steps + micro
        x, y = read_windows(data_dir, 'train', offsets[j * batch_size:(j + 1) * batch_size], block_size, vocab_size)
        return to_device(x, y, device)

    def schedule():
        step = start_step
        while True:
            for micro in range(micro_steps):
                yield step, micro
            step += 1

    with ThreadPoolExecutor(max_workers=1) as pool:
        order = schedule()
        pending = pool.submit(load, *next(order))
        while True:
            batch = pending.result()
            pending = pool.submit(load, *next(order))
            yield batch


def eval_batch(data_dir, split, seed, k, batch_size, block_size, vocab_size):
    """Eval batch k of a split, numpy (x, y): the same batches at every eval and for every world size,
    so successive evals (and runs) are compared on identical data."""
    n_tokens = os.path.getsize(os.path.join(data_dir, f'{split}.bin')) // 2
    stream = (EVAL_STREAM, 0 if split == 'train' else 1)
    offsets = window_offsets(seed, k, batch_size, n_tokens, block_size, stream)
    return read_windows(data_dir, split, offsets, block_size, vocab_size)
