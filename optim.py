"""
Muon for the blocks' weight matrices and AdamW for everything else, stepped as one optimizer (train.py's
optimizer='muon'; model.configure_optimizers builds it).

Muon (https://kellerjordan.github.io/posts/muon/) replaces each 2-D weight's momentum-averaged gradient by its
nearest semi-orthogonal matrix (a few Newton-Schulz iterations), so every direction of the matrix moves at the same
rate. It is for hidden matrices only: embeddings, the head, gains and biases stay with AdamW, each kind of parameter
at its own learning rate. The update is torch.optim.Muon's, with the iteration at a precision the caller states
(hardware.muon_dtype: the run's own), where torch's always iterates in bfloat16.
"""
import math

import torch


def newton_schulz(g, coefficients, steps, eps, dtype):
    """torch.optim.Muon's quintic Newton-Schulz iteration on g (rows, cols), in `dtype`: U S' V^T with S' ~ 1 for
    g = U S V^T (its singular values land in ~[0.5, 1.5], which trains as well as exactly 1)."""
    a, b, c = coefficients
    x = g.to(dtype)
    if g.size(0) > g.size(1):
        x = x.T  # the Gram matrix x x^T is then the smaller side
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm = 1
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if g.size(0) > g.size(1) else x


def adjusted_lr(lr, adjust_lr_fn, shape):
    """torch.optim.Muon's per-matrix learning rate for a (rows, cols) weight: 'original' (Keller Jordan's) scales
    by sqrt(max(1, rows / cols)); 'match_rms_adamw' (Moonshot's) by 0.2 sqrt(max(rows, cols)), so that the update's
    RMS is AdamW's and AdamW's learning rate carries over."""
    rows, cols = shape[:2]
    if adjust_lr_fn == 'match_rms_adamw':
        return lr * 0.2 * math.sqrt(max(rows, cols))
    return lr * math.sqrt(max(1, rows / cols))


def replicas_over_ranks():
    """The number of processes that hold the same matrices and gradients (DDP under torchrun), or 1."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


class Muon(torch.optim.Muon):
    """
    torch.optim.Muon (its arguments, state and state_dict) with the Newton-Schulz iteration in `ns_dtype`.

    Under DDP every rank holds the same matrices and, after the all-reduce, the same gradients; the iteration is
    most of Muon's cost (~1.5 TFLOP a step at 124M), so each rank orthogonalizes only its share of the matrices
    and the updates are all-gathered: matrices of one shape in runs of world_size, the i-th of a run on rank i
    (a rank a short last run leaves out sends zeros). Every rank keeps every momentum buffer (an elementwise lerp),
    so rank 0's state_dict is the whole state, as in one process. Not for FSDP, whose ranks hold shards (train.py
    refuses Muon there).
    """

    def __init__(self, params, ns_dtype=torch.float32, **kwargs):
        super().__init__(params, **kwargs)
        self.ns_dtype = ns_dtype

    def momentum(self, group, p):
        """Advance p's momentum buffer by its gradient; returns the direction Newton-Schulz orthogonalizes (the
        buffer, or with Nesterov the gradient moved toward it)."""
        state = self.state[p]
        if 'momentum_buffer' not in state:
            state['momentum_buffer'] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
        buf = state['momentum_buffer']
        buf.lerp_(p.grad, 1 - group['momentum'])
        return p.grad.lerp(buf, group['momentum']) if group['nesterov'] else buf

    def orthogonalized(self, group, direction):
        return newton_schulz(direction, group['ns_coefficients'], group['ns_steps'], group['eps'], self.ns_dtype)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        world_size = replicas_over_ranks()
        rank = torch.distributed.get_rank() if world_size > 1 else 0
        for group in self.param_groups:  # the update of torch.optim.Muon, written out
            params = [p for p in group['params'] if p.grad is not None]
            if world_size == 1:
                updates = [(p, self.orthogonalized(group, self.momentum(group, p))) for p in params]
            else:
                updates = self.gathered_updates(group, params, rank, world_size)
            lr = group['lr']
            for p, update in updates:
                p.mul_(1 - lr * group['weight_decay'])
                p.add_(update.to(p.dtype), alpha=-adjusted_lr(lr, group['adjust_lr_fn'], p.shape))
        return loss

    def gathered_updates(self, group, params, rank, world_size):
        """[(p, update)] for every p in params: this rank's share computed here, the rest all-gathered."""
        by_shape = {}
        for p in params:
            by_shape.setdefault(tuple(p.shape), []).append(p)
        pending = []  # (a run's params, the gathered updates, the all-gather's handle)
        for same in by_shape.values():
            for start in range(0, len(same), world_size):
                run = same[start:start + world_size]
                directions = [self.momentum(group, p) for p in run]  # every buffer advances on every rank
                mine = (self.orthogonalized(group, directions[rank]).to(run[rank].dtype).contiguous()
                        if rank < len(run) else torch.zeros_like(run[0]))  # a short run may leave this rank out
                outputs = [torch.empty_like(mine) for _ in range(world_size)]
                pending.append((run, outputs, torch.distributed.all_gather(outputs, mine, async_op=True)))
        updates = []
        for run, outputs, handle in pending:
            handle.wait()
            updates.extend(zip(run, outputs))
        return updates


class MuonAdamW:
    """One optimizer made of a Muon and an AdamW: param_groups lists both's groups (train_step sets their lr from
    the schedule, times each group's 'lr_ratio'), step and zero_grad do both, and the state_dict holds both."""

    def __init__(self, muon, adamw):
        self.muon, self.adamw = muon, adamw

    @property
    def param_groups(self):
        return self.muon.param_groups + self.adamw.param_groups

    @property
    def state(self):
        return {**self.muon.state, **self.adamw.state}

    def step(self, closure=None):
        assert closure is None, "MuonAdamW steps without a closure"
        self.muon.step()
        self.adamw.step()

    def zero_grad(self, set_to_none=True):
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self):
        return {'muon': self.muon.state_dict(), 'adamw': self.adamw.state_dict()}

    def load_state_dict(self, state_dict):
        if set(state_dict) != {'muon', 'adamw'}:
            raise ValueError("this optimizer state is not a Muon + AdamW one (optimizer='muon'): it was saved by "
                             "another optimizer")
        self.muon.load_state_dict(state_dict['muon'])
        self.adamw.load_state_dict(state_dict['adamw'])
