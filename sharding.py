"""
FSDP2 for train.py --parallelism=fsdp: each transformer block, then the root (embeddings, final norm and the tied
lm_head), sharded with torch.distributed.fsdp.fully_shard over all the processes, so that weights, gradients and
AdamW's state are split N ways instead of copied N times (DDP: ~16 bytes per parameter on every GPU).

No rank ever holds the whole model: it is built on the meta device (shapes, no memory), sharded, and only then
given memory, each rank its own shards on its own device (to_empty). A new model is then initialised parameter by
parameter, replaying the model's own init in a single process's order on one whole parameter at a time, so the
weights are exactly a single-process run's for the same seed. A loaded one (a checkpoint, GPT-2) is read by rank 0
alone and broadcast tensor by tensor, each rank keeping its shards (torch.distributed.checkpoint.state_dict).

Checkpoints stay one format: the full model and optimizer state are gathered onto rank 0's CPU and saved as the
plain ckpt.pt a single process writes (the optimizer's state keyed by parameter index, as optimizer.state_dict()
keys it), so sample.py, export.py and a single-process or DDP resume read an FSDP run's checkpoint, and an FSDP
run resumes from theirs. Gathering the whole model on one CPU is fine while it fits there (GPT-2 XL's 1.5B
parameters are ~25 GB with AdamW's state); past that, --checkpoint_format=sharded saves with
torch.distributed.checkpoint, each rank its own shards (save_sharded, below), and `python sharding.py --out_dir=<dir>`
converts such a checkpoint to the ckpt.pt the other scripts read.
"""
import copy
import os
import shutil
import tempfile

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

import checkpoint
from configurator import UserError, configure
from files import kill_point
from model import GPT

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole tensors, on rank 0's CPU
BROADCAST = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)  # whole tensors from rank 0 only


def load_model(init_from, out_dir, dropout):
    """checkpoint.load_model for FSDP: (model, checkpoint) where rank 0 alone reads the weights (a whole model on
    its CPU, until shard() broadcasts it) and the other ranks get the same GPT on the meta device. The checkpoint
    dict, on every rank, is all but the weights: rank 0 keeps its optimizer state (load_optimizer broadcasts it),
    the others an empty one."""
    if dist.get_rank() == 0:
        model, ckpt = checkpoint.load_model(init_from, out_dir, dropout, latest=True)
        if ckpt is not None:
            ckpt.pop('model')  # loaded into the model: a second copy of the weights is not kept
        small = None if ckpt is None else {k: v for k, v in ckpt.items() if k != 'optimizer'}
        message = [model.config, small]
    else:
        message = [None, None]
    dist.broadcast_object_list(message, src=0)
    if dist.get_rank() == 0:
        return model, ckpt
    config, small = message
    with torch.device('meta'):
        model = GPT(config)
    return model, None if small is None else {**small, 'optimizer': {'state': {}, 'param_groups': []}}


def shard(model, device, dtype, world_size, initialise_weights=True, compile=False):
    """Shard the GPT in place and give each rank its shards on `device`: a model built on the meta device on every
    rank (a new one) is initialised as one process initialises it; one with weights on rank 0 (load_model) gets
    them, broadcast. On a GPU with bf16, the parameters are gathered in bf16 for the forward and backward while
    gradients are reduced, and the optimizer steps, in fp32; elsewhere everything stays fp32.
    compile=True compiles each block on its own, in place (Module.compile: the same module, the same state_dict
    keys), before it is sharded: torch.compile of the whole model would break its graph at every sharded block's
    hooks, and a block's graph holds its activation checkpoint (Block.forward) too."""
    weights = None
    if dist.get_rank() == 0 and model.lm_head.weight.device.type != 'meta':
        weights = model.state_dict()  # rank 0's loaded weights, kept here while the model goes to the meta device
        _to_meta(model)
    template = copy.deepcopy(model)  # the unsharded shapes and names, on the meta device: no memory
    device_type = torch.device(device).type
    mesh = init_device_mesh(device_type, (world_size,))
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if device_type == 'cuda' and dtype == 'bfloat16' else MixedPrecisionPolicy())
    for block in model.transformer.h:
        if compile:
            block.compile()
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)  # the tied wte / lm_head weight is one parameter here
    model.to_empty(device=device)  # this rank's shards only, uninitialised
    model.reset_buffers(device)
    loaded = [weights is not None]
    dist.broadcast_object_list(loaded, src=0)
    if loaded[0]:
        set_model_state_dict(model, weights or {}, options=BROADCAST)
    elif initialise_weights:  # (a sharded checkpoint's load, after this, fills them instead)
        initialise(model, template)
    return model


def _to_meta(model):
    """model.to('meta') that keeps tied parameters tied (Module.to gives each of their modules its own copy)."""
    metas = {}
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) not in metas:
                metas[id(p)] = torch.nn.Parameter(torch.empty_like(p, device='meta'), p.requires_grad)
            setattr(module, name, metas[id(p)])


@torch.no_grad()
def initialise(model, template):
    """Give the sharded `model` the weights GPT(config) has after torch.manual_seed(seed) in one process: the
    model's own init steps replayed in their order on the meta-device `template`, one module's (or one
    parameter's) whole tensors at a time on the CPU, drawing the same random numbers; each rank copies its rows.
    The steps are GPT.__init__'s: each module's reset_parameters (its construction), GPT._init_weights over
    model.apply's order, GPT._init_residual over named_parameters. A step that leaves a tensor alone (its version
    counter unchanged) leaves its shards alone too, so each ends as the last step that wrote it left it."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    names = [name for name, _ in template.named_parameters()]  # before the ties break below

    owners = {id(m): n for n, m in template.named_modules()}

    def write(owner, name, full):  # this rank's rows (FSDP2 shards dim 0 as torch.chunk does) of a whole tensor
        local = getattr(model.get_submodule(owner), name).to_local()
        chunks = full.chunk(world_size, dim=0)
        rows = chunks[rank] if rank < len(chunks) else full[:0]
        assert local.shape == rows.shape, (owner, name, local.shape, rows.shape)
        local.copy_(rows)

    def replay(module, step):  # step(module) on the module's own parameters, whole, on the CPU
        owner = owners[id(module)]
        module.to_empty(device='cpu', recurse=False)
        versions = {n: p._version for n, p in module.named_parameters(recurse=False)}
        step(module)
        for n, p in module.named_parameters(recurse=False):
            if p._version != versions[n]:
                write(owner, n, p)
        module.to_empty(device='meta', recurse=False)

    for module in template.modules():
        if hasattr(module, 'reset_parameters') and next(module.parameters(recurse=False), None) is not None:
            replay(module, lambda m: m.reset_parameters())
    template.apply(lambda m: replay(m, template._init_weights))
    for name in names:
        owner, _, attr = name.rpartition('.')
        full = torch.empty_like(getattr(template.get_submodule(owner), attr), device='cpu')
        version = full._version
        template._init_residual(name, full)
        if full._version != version:
            write(owner, attr, full)


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
    """Load a whole optimizer.state_dict() held by rank 0 (from any ckpt.pt; the other ranks pass an empty one)
    into the sharded optimizer, broadcast tensor by tensor."""
    by_name = {}
    if dist.get_rank() == 0:
        names = _names(model, optimizer)
        by_name = {'state': {names[i]: s for i, s in state['state'].items()},
                   'param_groups': [{**g, 'params': [names[i] for i in g['params']]} for g in state['param_groups']]}
    set_optimizer_state_dict(model, optimizer, by_name, options=BROADCAST)


# -----------------------------------------------------------------------------
# sharded checkpoints (--checkpoint_format=sharded): out_dir/ckpt.dcp-<n>/, torch.distributed.checkpoint's format
# (each rank writes its own shards: .distcp files and a .metadata index) plus meta.pt, the small values of ckpt.pt


def save_sharded(model, optimizer, out_dir, meta):
    """Save the model's and optimizer's state, each rank its own shards (every rank calls it; under DDP or one
    process, DCP writes each replicated tensor once), and `meta` (ckpt.pt's other keys) from rank 0. Atomic: it is
    written into ckpt.dcp.tmp, then renamed to the next ckpt.dcp-<n>, and only then are older ones removed, so a
    kill at any point leaves the previous checkpoint whole."""
    import torch.distributed.checkpoint as dcp
    distributed = dist.is_initialized()
    tmp = os.path.join(out_dir, 'ckpt.dcp.tmp')
    if not distributed or dist.get_rank() == 0:
        shutil.rmtree(tmp, ignore_errors=True)  # a killed save's leftovers
    if distributed:
        dist.barrier()
    dcp.save({'model': get_model_state_dict(model), 'optimizer': get_optimizer_state_dict(model, optimizer)},
             checkpoint_id=tmp)
    if not distributed or dist.get_rank() == 0:
        checkpoint.save_checkpoint(meta, os.path.join(tmp, 'meta.pt'))
        kill_point(f"sharded-save:{meta['iter_num']}")  # tests: a kill -9 between DCP's write and the rename
        older = checkpoint.sharded_checkpoints(out_dir)
        path = os.path.join(out_dir, f'ckpt.dcp-{int(older[-1].rsplit("-", 1)[1]) + 1 if older else 0}')
        os.rename(tmp, path)
        for old in older:
            shutil.rmtree(old)
    if distributed:
        dist.barrier()  # no rank goes on (or exits) before the checkpoint is in place
    return path if not distributed or dist.get_rank() == 0 else None


def load_sharded(path, model, optimizer):
    """Load ckpt.dcp-<n> into the model and optimizer, built for this run at any world size, sharded or not:
    each rank reads the parts of the files its own shards (or whole tensors) need."""
    import torch.distributed.checkpoint as dcp
    state = {'model': get_model_state_dict(model)}
    if optimizer is not None:
        state['optimizer'] = get_optimizer_state_dict(model, optimizer)
    dcp.load(state, checkpoint_id=path)
    set_model_state_dict(model, state['model'])
    if optimizer is not None:
        set_optimizer_state_dict(model, optimizer, state['optimizer'])


def to_ckpt(out_dir):
    """Write out_dir/ckpt.pt, the one-file checkpoint sample.py, export.py and any resume read, from the newest
    sharded checkpoint in out_dir (torch's dcp_to_torch_save gathers it in this one process)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    paths = checkpoint.sharded_checkpoints(out_dir)
    if not paths:
        raise UserError(f"no sharded checkpoint (ckpt.dcp-<n>) in {out_dir}: train with --checkpoint_format=sharded")
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        dcp_to_torch_save(paths[-1], os.path.join(tmp, 'state.pt'))
        state = torch.load(os.path.join(tmp, 'state.pt'), weights_only=True)
    ckpt = torch.load(os.path.join(paths[-1], 'meta.pt'), weights_only=True)
    by_name = state['optimizer']
    names = [n for g in by_name['param_groups'] for n in g['params']]  # optimizer.state_dict()'s index order
    index = {n: i for i, n in enumerate(names)}
    ckpt['model'] = checkpoint.clean_state_dict(state['model'])
    ckpt['optimizer'] = {'state': {index[n]: s for n, s in by_name['state'].items()},
                         'param_groups': [{**g, 'params': [index[n] for n in g['params']]}
                                          for g in by_name['param_groups']]}
    checkpoint.save_checkpoint(ckpt, os.path.join(out_dir, 'ckpt.pt'))
    print(f"wrote {os.path.join(out_dir, 'ckpt.pt')} from {paths[-1]}")


if __name__ == '__main__':  # python sharding.py --out_dir=<dir>: the newest ckpt.dcp-<n> there, as dir/ckpt.pt
    out_dir = ''  # a run's out_dir that holds ckpt.dcp-<n> directories (--checkpoint_format=sharded)
    configure(globals())
    if not out_dir:
        raise UserError("say which run: python sharding.py --out_dir=<dir> (writes dir/ckpt.pt from its newest "
                        "ckpt.dcp-<n>)")
    to_ckpt(out_dir)
