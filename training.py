"""
The pieces of training that train.py, bench.py and rlhf.py share, as plain functions:
batches from the uint16 memmaps, the optimizer step with gradient accumulation, evaluation,
the learning-rate schedule, wandb and stop signals. Device, precision and the MFU peak: hardware.py.

Batches are a pure function of (seed, step): step s draws its windows from a generator seeded
by (seed, s), and splits them across ranks and micro-steps. The same config therefore sees the
same data whatever the world size, and a resumed run replays exactly the batches it would have
seen had it never stopped.
"""
import math
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
import torch

from tokenizer import dataset_dir

EVAL_STREAM = 0x5EED_E7A1  # keeps eval windows independent of the training steps' windows


# -----------------------------------------------------------------------------
# data

def open_split(data_dir, split):
    """train.bin / val.bin as a read-only uint16 memmap. Opened anew for every batch: a long-lived
    np.memmap keeps every page it touched resident, which looks like a memory leak on big data."""
    return np.memmap(os.path.join(data_dir, f'{split}.bin'), dtype=np.uint16, mode='r')


def check_dataset(dataset, block_size):
    """The data folder for `dataset`, after checking both splits exist, are whole uint16 tokens and hold
    more than one window."""
    data_dir = dataset_dir(dataset)
    for split in ('train', 'val'):
        path = os.path.join(data_dir, f'{split}.bin')
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: prepare the dataset first, e.g. "
                                    f"`python data/{os.path.basename(dataset)}/prepare.py`")
        size = os.path.getsize(path)
        if size % 2:  # np.memmap would say only "not a multiple of the data-type size", naming no file
            raise ValueError(f"{path} has an odd size ({size} bytes), so it is not whole uint16 "
                             f"tokens: it is truncated or not a token file; re-run the dataset's prepare.py (e.g. "
                             f"`python data/{os.path.basename(dataset)}/prepare.py`)")
        n_tokens = size // 2
        mask_path = os.path.join(data_dir, f'{split}_mask.bin')
        if os.path.exists(mask_path) and os.path.getsize(mask_path) != n_tokens:
            raise ValueError(f"{mask_path} has {os.path.getsize(mask_path)} bytes but {path} has {n_tokens} "
                             f"tokens: they must be written together; re-run the dataset's prepare.py")
        if n_tokens <= block_size + 1:
            raise ValueError(f"{path} holds {n_tokens} tokens, too few for one window of block_size "
                             f"{block_size} (+1 target): prepare more text or lower block_size")
    return data_dir


def window_offsets(seed, step, count, n_tokens, block_size, stream=()):
    """`count` window starts in [0, n_tokens - block_size), from a generator seeded by (seed, step)."""
    rng = np.random.default_rng([seed, *stream, step])
    return rng.integers(0, n_tokens - block_size, size=count)


def read_windows(data_dir, split, offsets, block_size, vocab_size):
    """
    Inputs and next-token targets at the given offsets: two int64 numpy arrays (B, block_size).
    An optional <split>_mask.bin beside the tokens (uint8, one byte per token) marks which tokens
    count as targets: where it is 0 the target becomes -1, which the loss ignores. This is how a task
    trains only on answers (e.g. data/adder) while the token stream stays plain uint16.
    """
    data = open_split(data_dir, split)
    positions = offsets[:, None] + np.arange(block_size + 1)  # (B, T+1)
    windows = data[positions].astype(np.int64)
    top = windows.max()
    if top >= vocab_size:
        raise ValueError(f"token id {top} in {data_dir}/{split}.bin does not fit the model's vocab_size "
                         f"{vocab_size}: the data was prepared with another tokenizer than the model's")
    x, y = np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])
    mask_path = os.path.join(data_dir, f'{split}_mask.bin')
    if os.path.exists(mask_path):
        keep = np.memmap(mask_path, dtype=np.uint8, mode='r')[positions[:, 1:]]
        y[keep == 0] = -1
    return x, y


def to_device(x, y, device):
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    if device.startswith('cuda'):  # pinned host memory lets the copy overlap with compute
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def train_batches(data_dir, seed, start_step, batch_size, block_size, grad_accum, micro_steps, rank,
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


@torch.no_grad()
def estimate_loss(model, data_dir, eval_iters, batch_size, block_size, vocab_size, seed, ctx, device,
                  rank=0, world_size=1, stopper=None):
    """Mean loss over eval_iters fixed batches per split; ranks share the batches and all-reduce.
    The model is evaluated in eval mode and left in the mode it came in. With a GracefulStop (one process
    only: ranks must all reach the all-reduce), a stop request ends it early and it returns None."""
    was_training = model.training
    model.eval()
    out = {}
    for split in ('train', 'val'):
        total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of losses, batches)
        for k in range(rank, eval_iters, world_size):
            if stopper is not None and stopper.requested:
                model.train(was_training)
                return None
            x, y = to_device(*eval_batch(data_dir, split, seed, k, batch_size, block_size, vocab_size), device)
            with ctx:
                _, loss = model(x, y)
            total += torch.stack([loss.double(), torch.ones((), dtype=torch.float64, device=device)])
        if world_size > 1:
            torch.distributed.all_reduce(total)
        out[split] = (total[0] / total[1]).item()
    model.train(was_training)
    return out


# -----------------------------------------------------------------------------
# optimisation

def get_lr(it, learning_rate, warmup_iters, lr_decay_iters, min_lr, decay_lr=True):
    """Linear warmup for warmup_iters, then cosine decay to min_lr at lr_decay_iters, then min_lr."""
    if not decay_lr:
        return learning_rate
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_lr
    ratio = (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return min_lr + coeff * (learning_rate - min_lr)


def train_step(model, optimizer, scaler, batches, micro_steps, ctx, grad_clip, lr, ddp=False):
    """
    One optimizer step over micro_steps micro-batches from `batches`. Each micro-loss is divided by
    micro_steps, so the gradients add up to the mean over the step's batch (DDP then averages over
    ranks); under DDP only the last micro-step all-reduces gradients. Returns this rank's mean loss
    as a 0-dim tensor (no host sync here: call .item() only when logging).
    """
    for group in optimizer.param_groups:
        group['lr'] = lr
    total = torch.zeros((), device=next(model.parameters()).device)
    for micro in range(micro_steps):
        x, y = next(batches)
        sync = not ddp or micro == micro_steps - 1
        with (nullcontext() if sync else model.no_sync()):
            with ctx:
                _, loss = model(x, y)
                loss = loss / micro_steps
            scaler.scale(loss).backward()
        total += loss.detach()
    if grad_clip > 0.0:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return total


def init_wandb(project, run_name, config):
    """wandb.init, or a one-line error saying how to get wandb (it is optional, not in requirements.txt)."""
    try:
        import wandb
    except ImportError:
        raise ValueError("wandb_log=True needs wandb: `pip install wandb` (WANDB_MODE=offline logs without an "
                         "account); every record is also in out_dir/log.jsonl") from None
    wandb.init(project=project, name=run_name, config=config)
    return wandb


class GracefulStop:
    """The first Ctrl-C or SIGTERM (a scheduler pre-empting the job) sets `signum` instead of killing the
    process, so a training loop can finish its step (or cut an evaluation short), save, and exit (train.py,
    rlhf.py): no work is lost. A second one stops at once (SystemExit 130: no traceback, `finally` blocks
    run); checkpoints are written atomically, so the last one on disk stays whole."""

    def __init__(self):
        self.signum = None
        signal.signal(signal.SIGINT, self._request)
        signal.signal(signal.SIGTERM, self._request)

    def _request(self, signum, frame):
        if self.signum is not None:
            print(f"\nstopped at once by a second {signal.Signals(signum).name}; the last checkpoint on disk is "
                  f"whole", file=sys.stderr, flush=True)
            raise SystemExit(130)
        self.signum = signum
        print(f"\n{signal.Signals(signum).name}: stopping after the current step (again to stop at once)",
              file=sys.stderr, flush=True)

    @property
    def requested(self):
        return self.signum is not None
