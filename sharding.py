"""
FSDP2 for train.py --parallelism=fsdp: each transformer block, then the root (embeddings, final norm and the tied
lm_head), sharded with torch.distributed.fsdp.fully_shard over all the processes, so that weights, gradients and
AdamW's state are split N ways instead of copied N times (DDP: ~16 bytes per parameter on every GPU).

Checkpoints stay one format: the full model and optimizer state are gathered onto rank 0's CPU and saved as the
plain ckpt.pt a single process writes (the optimizer's state keyed by parameter index, as optimizer.state_dict()
keys it), so sample.py, export.py and a single-process or DDP resume read an FSDP run's checkpoint, and an FSDP
run resumes from theirs. Gathering the whole model on one CPU is fine while it fits there (GPT-2 XL's 1.5B
parameters are ~25 GB with AdamW's state); past that, torch.distributed.checkpoint's sharded saves are the tool.
"""
import torch
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_optimizer_state_dict)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole tensors, on rank 0's CPU


def shard(model, device_type, dtype, world_size):
    """Shard the GPT in place. On a GPU with bf16, the parameters are gathered in bf16 for the forward and
    backward while gradients are reduced, and the optimizer steps, in fp32; elsewhere everything stays fp32."""
    mesh = init_device_mesh(device_type, (world_size,))
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if device_type == 'cuda' and dtype == 'bfloat16' else MixedPrecisionPolicy())
    for block in model.transformer.h:
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)  # the tied wte / lm_head weight is one parameter here
    return model


def _names(model, optimizer):
    """The parameter names in the optimizer's order: the index optimizer.state_dict() gives each parameter."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group['params']]


def full_state(model, optimizer):
    """(model state dict, optimizer state dict), whole, on rank 0's CPU (every rank must call it: it gathers);
    the optimizer's in optimizer.state_dict()'s own format."""
    model_state = get_model_state_dict(model, options=FULL)
    shared = {}  # a parameter of two names (the tied wte / lm_head weight) comes back as two copies: keep one, so
    for name, p in model.named_parameters(remove_duplicate=False):  # ckpt.pt stores it once, as one process's does
        if name in model_state:
            model_state[name] = shared.setdefault(id(p), model_state[name])
    by_name = get_optimizer_state_dict(model, optimizer, options=FULL)
    if not by_name:  # the other ranks get empty dicts: with cpu_offload only rank 0 holds the gathered state
        return model_state, by_name
    names = _names(model, optimizer)
    index = {n: i for i, n in enumerate(names)}
    optimizer_state = {'state': {index[n]: s for n, s in by_name['state'].items()},
                       'param_groups': [{**g, 'params': [index[n] for n in g['params']]}
                                        for g in by_name['param_groups']]}
    return model_state, optimizer_state


def load_optimizer(model, optimizer, state):
    """Load a whole optimizer.state_dict() (from any ckpt.pt, every rank holding it) into the sharded optimizer."""
    names = _names(model, optimizer)
    by_name = {'state': {names[i]: s for i, s in state['state'].items()},
               'param_groups': [{**g, 'params': [names[i] for i in g['params']]} for g in state['param_groups']]}
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))
