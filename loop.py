"""
The pieces of a training loop that train.py, bench.py, rlhf.py and train_reward.py share, as plain
functions: the optimizer step with gradient accumulation, the learning-rate schedule, the loss on fixed
eval batches, the run's log (out_dir/log.jsonl, mirrored to wandb) and stop signals (Ctrl-C, SIGTERM).
Batches: dataloader.py. Device, precision and the MFU peak: hardware.py. ckpt.pt: checkpoint.py.
"""
import json
import math
import os
import signal
import sys
from contextlib import contextmanager, nullcontext

import numpy as np
import torch

import hardware
from configurator import UserError
from dataloader import eval_batch, to_device

DROPOUT_STREAM = 0xD80_0A7  # keeps the dropout seeds apart from the batches' (dataloader.py)


# -----------------------------------------------------------------------------
# evaluation

@contextmanager
def eval_mode(model):
    """model.eval() for the block, then back to the mode it came in (also when the block returns or raises)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def estimate_loss(model, *, data_dir, eval_iters, batch_size, block_size, vocab_size, seed, ctx, device,
                  rank=0, world_size=1, stopper=None, masked_targets=False):
    """Mean loss over eval_iters fixed batches per split; ranks share the batches and all-reduce.
    masked_targets: the data has answer masks (dataloader.has_answer_masks), see GPT.forward.
    The model is evaluated in eval mode and left in the mode it came in. With a GracefulStop (one process
    only: ranks must all reach the all-reduce), a stop request ends it early and it returns None."""
    out = {}
    with eval_mode(model):
        for split in ('train', 'val'):
            total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of losses, batches)
            for k in range(rank, eval_iters, world_size):
                if stopper is not None and stopper.requested:
                    return None
                x, y = to_device(*eval_batch(data_dir, split, seed, k, batch_size, block_size, vocab_size), device)
                with ctx:
                    _, loss = model(x, y, masked_targets=masked_targets)
                total += torch.stack([loss.double(), torch.ones((), dtype=torch.float64, device=device)])
            if world_size > 1:
                torch.distributed.all_reduce(total)
            out[split] = (total[0] / total[1]).item()
    return out


# -----------------------------------------------------------------------------
# optimisation

def get_lr(it, *, learning_rate, warmup_iters, lr_decay_iters, min_lr, decay_lr=True):
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


def seed_step(seed, rank, step):
    """Reseed torch's generators (CPU and CUDA: dropout) from (seed, rank, step) before a training step: every
    rank draws its own masks, and a resumed run draws exactly those an uninterrupted one would, for any number
    of processes, with no RNG state to carry in the checkpoint."""
    torch.manual_seed(int(np.random.SeedSequence([seed, DROPOUT_STREAM, rank, step]).generate_state(1, np.uint64)[0]))


def set_lr(optimizer, lr):
    """The schedule's learning rate on every group of the optimizer, times the group's 'lr_ratio' (its own rate
    over the schedule's: Muon's matrices run at muon_lr; a group without one runs at lr)."""
    for group in optimizer.param_groups:
        group['lr'] = lr * group.get('lr_ratio', 1.0)


def train_step(model, optimizer, batches, *, scaler, micro_steps, ctx, grad_clip, lr, sync=None,
               masked_targets=False):
    """
    One optimizer step over micro_steps micro-batches from `batches`. Each micro-loss is divided by
    micro_steps, so the gradients add up to the mean over the step's batch (DDP and FSDP then average over
    ranks); with sync='ddp' or 'fsdp' only the last micro-step reduces gradients across ranks (sync=None under
    FSDP: every micro-step reduce-scatters, so only gradient shards are kept between them). Returns this
    rank's mean loss as a 0-dim tensor (no host sync here: call .item() only when logging). Clipping works
    on FSDP's sharded gradients too: clip_grad_norm_ takes the norm over every shard. masked_targets: the data
    has answer masks (dataloader.has_answer_masks), see GPT.forward.
    """
    set_lr(optimizer, lr)
    total = torch.zeros((), device=next(model.parameters()).device)
    for micro in range(micro_steps):
        x, y = next(batches)
        last = micro == micro_steps - 1
        if sync == 'fsdp':
            model.set_requires_gradient_sync(last)
        with (model.no_sync() if sync == 'ddp' and not last else nullcontext()):
            with ctx:
                _, loss = model(x, y, masked_targets=masked_targets)
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


# -----------------------------------------------------------------------------
# the run's log and stop signals

class RunLog:
    """A run's records, one JSON object per line of `path` (out_dir/log.jsonl), and to wandb when given
    wandb=(project, run_name, config). keep_before=N starts the file over with only the records of
    iterations below N: 0 for a new run, iter_num for a resumed one, which replays its iterations from
    there (so a plot of the log never loops back); None appends to what is there (train.py's eval_only).
    wandb_run_id (a resumed run's, from its ckpt.pt) continues that wandb run instead of starting one;
    the id this log writes to is self.wandb_run_id, for the checkpoint. The file is cut back only at the first
    write, together with that record: a run that fails before it has a record of its own leaves the log as it
    found it, matching the checkpoint it also left alone."""

    def __init__(self, path, keep_before=None, wandb=None, wandb_run_id=None):
        self.path = path
        self.keep_before = keep_before
        self.wandb_run, self.wandb_run_id = None, None
        if wandb:
            project, run_name, config = wandb
            self.wandb_run = import_wandb().init(project=project, name=run_name, config=config, id=wandb_run_id,
                                                 resume='allow' if wandb_run_id else None)
            self.wandb_run_id = self.wandb_run.id
            # a record's wandb step is its iteration. A resumed run replays iterations the wandb run may already
            # hold (online, wandb then starts at the step after its last): those are skipped, not refused noisily
            self.wandb_first_step = self.wandb_run.step

    def write(self, record):
        line = json.dumps(record) + '\n'
        if self.keep_before is None:
            with open(self.path, 'a') as f:
                f.write(line)
        else:  # the first record: the kept ones and it replace the file at once (a temporary file, renamed)
            kept = []
            if os.path.exists(self.path):
                with open(self.path) as f:
                    kept = [k for k in f if k.strip() and json.loads(k).get('iter', -1) < self.keep_before]
            with open(self.path + '.tmp', 'w') as f:
                f.writelines(kept + [line])
            os.replace(self.path + '.tmp', self.path)
            self.keep_before = None
        if self.wandb_run is not None and record['iter'] >= self.wandb_first_step:
            self.wandb_run.log(record, step=record['iter'])


def import_wandb():
    """The wandb module, imported only when a run logs to it (the import takes half a second), or a one-line
    error saying how to get it. Scripts call it right after their settings are checked, so that a missing wandb
    stops a --wandb_log=True run before any work."""
    try:
        import wandb
    except ImportError:
        raise UserError("wandb_log=True needs wandb: `pip install wandb` (WANDB_MODE=offline logs without an "
                        "account); every record is also in out_dir/log.jsonl") from None
    return wandb


def any_rank(flag, device):
    """True on every rank when `flag` is True on any of them: an all-reduce, then a wait for its result."""
    flags = torch.tensor([float(flag)], device=device)
    torch.distributed.all_reduce(flags)
    return flags.item() > 0


class GracefulStop:
    """The first Ctrl-C or SIGTERM (a scheduler pre-empting the job) sets `signum` instead of killing the
    process, so a training loop can finish its step (or cut an evaluation short), save, and exit (train.py,
    rlhf.py): no work is lost. A second one stops at once (SystemExit 130: no traceback, `finally` blocks
    run); checkpoints are written atomically, so the last one on disk stays whole. A torchrun worker whose
    launcher died gets hardware.LAUNCHER_DEATH_SIGNAL from the kernel, repeated: that is one stop request."""

    def __init__(self):
        self.signum = None
        signal.signal(signal.SIGINT, self._request)
        signal.signal(signal.SIGTERM, self._request)
        signal.signal(hardware.LAUNCHER_DEATH_SIGNAL, self._launcher_died)

    def _launcher_died(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            print("\nthe torchrun launcher died: stopping after the current step", file=sys.stderr, flush=True)

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
