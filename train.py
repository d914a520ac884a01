"""
Train a GPT: from scratch, resumed from out_dir/ckpt.pt, or finetuned from GPT-2 weights.

On one CPU or GPU:
$ python train.py config/train_shakespeare_char.py --batch_size=32 --compile=False

With DDP on 4 GPUs of one node:
$ torchrun --standalone --nproc_per_node=4 train.py

With FSDP (weights, gradients and optimizer state sharded over the GPUs: models DDP cannot fit):
$ torchrun --standalone --nproc_per_node=4 train.py --parallelism=fsdp --activation_checkpointing=True

With DDP on 4 GPUs across 2 nodes (run on the master node, IP 123.456.123.456):
$ torchrun --nproc_per_node=8 --nnodes=2 --node_rank=0 --master_addr=123.456.123.456 --master_port=1234 train.py
and on the worker node:
$ torchrun --nproc_per_node=8 --nnodes=2 --node_rank=1 --master_addr=123.456.123.456 --master_port=1234 train.py
(If your cluster has no Infiniband interconnect, prepend NCCL_IB_DISABLE=1.) FSDP across the 2 nodes: the same two
commands with --parallelism=fsdp.
"""
import math
import os
import shlex
import sys
import time

import configurator
from configurator import UserError, configure, require, require_positive

# -----------------------------------------------------------------------------
# default config values: GPT-2 (124M) on OpenWebText
# I/O
out_dir = 'out'
eval_interval = 2000
log_interval = 1
eval_iters = 200
eval_only = False  # if True, evaluate once and exit
always_save_checkpoint = True  # if True, save a checkpoint after every eval, not only when val improves
overwrite = False  # if True, a new run (init_from not 'resume') may replace the trained model already in out_dir
init_from = 'scratch'  # 'scratch', 'resume', 'auto' (resume if out_dir has a checkpoint, else scratch: elastic
# restarts), 'gpt2*', a local Hugging Face GPT-2 directory, or another run's out_dir
checkpoint_format = 'ckpt'  # 'ckpt': one file, out_dir/ckpt.pt; 'sharded': out_dir/ckpt.dcp-<n>/, each rank its shards
eval_hellaswag = False  # also score HellaSwag (eval_tasks.py's multiple choice) at each eval, into log.jsonl
hellaswag_file = ''  # '' = data/hellaswag/val.jsonl (python data/hellaswag/prepare.py), or a multiple-choice jsonl
# wandb logging
wandb_log = False  # disabled by default
wandb_project = 'owt'
wandb_run_name = 'gpt2'
# data
dataset = 'openwebtext'
gradient_accumulation_steps = 5 * 8  # the global count, over all DDP processes
batch_size = 12  # micro-batch size (sequences) per process
block_size = 1024
# model
n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0  # 0 for pretraining is good, try 0.1+ for finetuning
bias = False  # biases inside LayerNorm and Linear layers?
# the modern recipe, each switch on its own (model.py's GPTConfig; config/*_modern.py turns them on); all off is GPT-2
rotary = False  # rotary position embeddings instead of learned ones
rotary_base = 10000.0
qk_norm = False  # RMS-normalise queries and keys per head
rmsnorm = False  # parameter-free RMSNorm instead of LayerNorm
relu_squared = False  # relu(x)^2 in the MLP instead of GELU
tie_embeddings = True  # lm_head shares the token embedding's matrix
logit_softcap = 0.0  # > 0: logits = softcap * tanh(logits / softcap)
zero_init_proj = False  # residual-writing projections (and an untied head) start at zero
embedding_norm = False  # normalise the embeddings before the first block
# optimizer: 'adamw', or 'muon' (Muon for the blocks' 2-D weights at muon_lr, AdamW for the rest at learning_rate)
optimizer = 'adamw'
muon_lr = 0.02
muon_momentum = 0.95
learning_rate = 6e-4  # max learning rate
max_iters = 600000  # total number of optimizer steps (0 from scratch: save the untrained model, a baseline)
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0  # clip gradients at this norm, or disable if == 0.0
# learning rate decay settings
decay_lr = True  # whether to decay the learning rate
warmup_iters = 2000  # how many steps to warm up for
lr_decay_iters = 600000  # should be ~= max_iters per Chinchilla
min_lr = 6e-5  # minimum learning rate, should be ~= learning_rate/10 per Chinchilla
# DDP settings
backend = 'auto'  # 'nccl' on CUDA, 'gloo' on CPU; or name one
parallelism = 'ddp'  # under torchrun: 'ddp' (every process holds the whole model) or 'fsdp' (sharded: sharding.py)
fsdp_reduce_every_micro_step = True  # FSDP: reduce-scatter gradients after each micro-step, keeping only their
# shards (memory: 1/N of the gradients), or False: once per step, holding whole gradients across micro-steps
# (communication: one reduction per step, as DDP)
# system
device = 'auto'  # 'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # 'float32', 'bfloat16', 'float16' (with a GradScaler), or 'auto'
compile = True  # use PyTorch 2.0 to compile the model to be faster (unless set: False for float32 on a CPU)
activation_checkpointing = False  # recompute each block in the backward: ~1/3 more compute, far less activation memory
seed = 1337
# -----------------------------------------------------------------------------
config = configure(globals())  # overrides from config files and the command line
command = shlex.join(['python', 'train.py', *sys.argv[1:]])  # recorded in ckpt.pt: what made the model
resume_command = shlex.join(['python', 'train.py', *[a for a in sys.argv[1:] if not a.startswith('--init_from=')],
                             '--init_from=resume'])  # the same config and out_dir, continued
# every count and rate checked before any work: a 0 here would train nothing, divide by zero or NaN the loss later
require_positive(globals(), 'gradient_accumulation_steps', 'batch_size', 'block_size', 'n_layer', 'n_head', 'n_embd',
                 'eval_interval', 'log_interval', 'eval_iters', 'lr_decay_iters')
require(globals(), 'max_iters', 'warmup_iters', at_least=0)
require(globals(), 'learning_rate', above=0)
require(globals(), 'min_lr', 'grad_clip', 'weight_decay', at_least=0)
require(globals(), 'beta1', 'beta2', 'dropout', at_least=0, below=1)
require(globals(), 'muon_lr', above=0)
require(globals(), 'muon_momentum', at_least=0, below=1)
if parallelism not in ('ddp', 'fsdp'):
    raise UserError(f"parallelism must be 'ddp' or 'fsdp', got '{parallelism}'")
if optimizer not in ('adamw', 'muon'):
    raise UserError(f"optimizer must be 'adamw' or 'muon', got '{optimizer}'")
if checkpoint_format not in ('ckpt', 'sharded'):
    raise UserError(f"checkpoint_format must be 'ckpt' or 'sharded', got '{checkpoint_format}'")
if checkpoint_format == 'sharded' and optimizer == 'muon':
    raise UserError("--checkpoint_format=sharded saves AdamW's state, not Muon's: use --checkpoint_format=ckpt")
# -----------------------------------------------------------------------------
# the rest is imported only now, the settings checked: importing torch takes seconds, a typo's error line does not
import torch  # noqa: E402
from torch.distributed import destroy_process_group  # noqa: E402
from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: E402

import dataloader  # noqa: E402
import hardware  # noqa: E402
import loop  # noqa: E402
from checkpoint import (check_new_run, check_vocabulary, claim_out_dir, load_checkpoint, load_model,  # noqa: E402
                        make_checkpoint, model_from_checkpoint, new_model, newest_is_sharded, recorded_tokenizer,
                        resume_path, save_checkpoint, sharded_checkpoints, weights_are_finite)
from eval_tasks import read_choices, score_choices  # noqa: E402
from files import kill_point  # noqa: E402
from model import RECIPE_FIELDS  # noqa: E402
from tokenizer import VOCAB_FILES, dataset_dir, for_dataset  # noqa: E402

if wandb_log:
    loop.import_wandb()  # a missing wandb is one line now, not after the model is built

# various inits, derived attributes, I/O setup
distributed = int(os.environ.get('RANK', -1)) != -1  # launched by torchrun?
restart = int(os.environ.get('TORCHELASTIC_RESTART_COUNT', 0))  # torchrun's attempt (--max-restarts)
if init_from == 'auto':  # torchrun's restart after a failure (--max-restarts) resumes what the failed attempt saved
    init_from = 'resume' if os.path.isfile(resume_path(out_dir)) or sharded_checkpoints(out_dir) else 'scratch'
ddp, fsdp = distributed and parallelism == 'ddp', distributed and parallelism == 'fsdp'
sharded_resume = newest_is_sharded(out_dir) if init_from == 'resume' else None  # a ckpt.dcp-<n> newer than ckpt.pt
every_rank_saves = fsdp or checkpoint_format == 'sharded'  # a gathering or sharded save takes every rank
if fsdp or every_rank_saves or sharded_resume:
    import sharding  # only here: torch.distributed.checkpoint and fsdp add a second to every start-up
hw = hardware.setup(device, dtype, keep_freed=not fsdp)  # dtype 'auto': what this hardware runs fastest and accurately
device_type, dtype, ctx = hw.device_type, hw.dtype, hw.ctx
# in float32 on a CPU torch.compile ran no faster than eager, at the quickstart's size and at GPT-2 124M's, after a
# cold compile of ~30 s (BENCHMARKS.md; in bf16 it took 16-23% off GPT-2 124M's step): there the default is eager,
# and a --compile=True (or a config's) still compiles
eager_on_cpu = compile and device_type == 'cpu' and dtype == 'float32' and 'compile' not in configurator.given
if eager_on_cpu:
    compile = config['compile'] = False
if parallelism == 'fsdp' and not distributed:
    raise UserError("--parallelism=fsdp shards the model over torchrun's processes: launch it with torchrun, e.g. "
                    "`torchrun --standalone --nproc_per_node=2 train.py ...` (--nproc_per_node=1 works too)")
if fsdp and dtype == 'float16':
    raise UserError("--parallelism=fsdp trains in bfloat16 or float32, not float16 (a GradScaler does not see the "
                    "shards); use --dtype=bfloat16")
if distributed and gradient_accumulation_steps % int(os.environ['WORLD_SIZE']) != 0:
    raise UserError(f"gradient_accumulation_steps ({gradient_accumulation_steps}) is the global count and must be "
                    f"divisible by the number of processes ({os.environ['WORLD_SIZE']})")
if fsdp and eval_iters % int(os.environ['WORLD_SIZE']) != 0:  # every shard takes part in every forward
    raise UserError(f"with --parallelism=fsdp eval_iters ({eval_iters}) must be divisible by the number of processes "
                    f"({os.environ['WORLD_SIZE']}), so that every process runs the same evaluation forwards")
if fsdp and optimizer == 'muon':  # Newton-Schulz needs each whole matrix, which FSDP splits over the ranks
    raise UserError("--optimizer=muon does not run under --parallelism=fsdp: train with --parallelism=ddp (or one "
                    "process), or with --optimizer=adamw")
if not eval_only:  # a new run must not overwrite a trained model: resume it, or pick another out_dir
    check_new_run(out_dir, init_from, overwrite)
rank, local_rank, world_size, device = hardware.init_distributed(hw.device, backend)  # one process: 0, 0, 1
master_process = rank == 0  # this process will do logging, checkpointing etc.
micro_steps = gradient_accumulation_steps // world_size  # per process, per optimizer step
tokens_per_iter = gradient_accumulation_steps * batch_size * block_size
if master_process:
    print(f"tokens per iteration will be: {tokens_per_iter:,}")
    if eval_only:
        os.makedirs(out_dir, exist_ok=True)
    else:  # writable, and no second live run writing it: checked before any work; held until the process ends
        out_dir_lock = claim_out_dir(out_dir)

# data: a dataset with a meta.pkl (a character vocabulary) or a tokenizer.json (a BPE trained on it) sets vocab_size
data_dir = dataloader.check_dataset(dataset, block_size)
data_tokenizer = for_dataset(dataset)
meta_vocab_size = data_tokenizer.vocab_size if data_tokenizer.name != 'gpt2' else None
if master_process and meta_vocab_size is not None:
    rows = data_tokenizer.model_vocab_size
    print(f"found vocab_size = {meta_vocab_size} (inside {os.path.join(data_dir, VOCAB_FILES[data_tokenizer.name])})"
          + (f", padded to {rows} for a new model" if rows != meta_vocab_size else ''))
masked_targets = dataloader.has_answer_masks(data_dir)  # a loss on answers only (data/tasks.py's masks)
head_share = dataloader.answer_share(data_dir, block_size)  # the share of positions lm_head computes: MFU's count
hellaswag = None  # the examples scored at each eval: read and checked now, before any work
default_hellaswag = os.path.join(dataset_dir('hellaswag'), 'val.jsonl')
if eval_hellaswag and not hellaswag_file and not os.path.isfile(default_hellaswag):
    if master_process:  # the flagship config asks for it; a machine with only the training data still trains
        print(f"HellaSwag is not scored: {default_hellaswag} not found (`python data/hellaswag/prepare.py` "
              f"writes it)")
elif eval_hellaswag:
    hellaswag = read_choices(hellaswag_file or default_hellaswag, data_tokenizer, block_size)

# model init
iter_num = 0
local_iter_num = 0  # number of iterations in the lifetime of this process
best_val_loss = 1e9
saved_iter = None  # the iteration of the ckpt.pt this run must not lose (its best model), once there is one
wandb_run_id = None  # the wandb run this training logs to, kept in ckpt.pt: a resumed run continues it
checkpoint = None
torch.manual_seed(seed)  # the same initial weights on every rank
if init_from == 'scratch':
    if master_process:
        print("Initializing a new model from scratch")
    with torch.device('meta' if fsdp else 'cpu'):  # FSDP: shapes only; sharding.shard gives each rank its shards
        model = new_model(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=bias,
                          vocab_size=data_tokenizer.model_vocab_size, dropout=dropout,
                          **{k: config[k] for k in RECIPE_FIELDS})
else:
    if master_process:
        print(f"Initializing from {init_from} ({out_dir} checkpoint)" if init_from == 'resume' else
              f"Initializing from the weights of {init_from}")
    if sharded_resume:  # the small values now; the weights once the optimizer is built (sharding.load_sharded)
        checkpoint = load_checkpoint(os.path.join(sharded_resume, 'meta.pt'))
        with torch.device('meta' if fsdp else 'cpu'):
            model = model_from_checkpoint(checkpoint, dropout)
    elif fsdp:  # rank 0 reads the weights, the others build the model on the meta device (sharding.shard broadcasts)
        model, checkpoint = sharding.load_model(init_from, out_dir, dropout)
    else:  # an interrupted run's resume.pt first
        model, checkpoint = load_model(init_from, out_dir, dropout, latest=True)
    trained_with = recorded_tokenizer(checkpoint, init_from)  # a checkpoint knows its vocabulary; so does an export
    if trained_with is not None:
        check_vocabulary(trained_with, dataset, out_dir + '/ckpt.pt' if init_from == 'resume' else init_from)
    if init_from == 'resume':
        iter_num = checkpoint['iter_num']
        best_val_loss = checkpoint['best_val_loss']
        saved_iter = checkpoint.get('best_iter', iter_num)
        wandb_run_id = checkpoint.get('wandb_run_id')
    else:  # another run's weights start a new run: its optimizer state and iteration count are not this run's
        checkpoint = None
    # the model's shape is the checkpoint's: a shape setting the user gave (on the command line or in a config
    # file) that contradicts it stops the run; left at its default, it takes the checkpoint's. A new run may crop
    # the context (e.g. GPT-2's 1024 to a smaller block_size); a resumed one continues the model it saved
    shape_keys = ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias', *RECIPE_FIELDS)
    if 'block_size' not in configurator.given:
        block_size = model.config.block_size
    cropped = init_from != 'resume' and block_size < model.config.block_size
    contradicting = [k for k in shape_keys if k in configurator.given and config[k] != getattr(model.config, k)
                     and not (k == 'block_size' and cropped)]
    if contradicting:
        source = out_dir + '/ckpt.pt' if init_from == 'resume' else init_from
        fix = ("a resumed run keeps its checkpoint's shape" if init_from == 'resume' else
               "a finetuned model keeps the shape of the one it starts from (block_size may be smaller)")
        raise UserError(f"{source} has {', '.join(f'{k}={getattr(model.config, k)!r}' for k in contradicting)}, "
                        f"but {', '.join(f'{k}={config[k]!r} (from {configurator.given[k]})' for k in contradicting)}"
                        f": {fix}; drop those settings, or train that shape from scratch into a new --out_dir")
    if cropped:
        model.crop_block_size(block_size)
    elif block_size > model.config.block_size:
        raise UserError(f"block_size {block_size} is larger than the model's context {model.config.block_size}")
    for k in shape_keys:  # the run's recorded config says the shape it trains, as model_args does
        config[k] = globals()[k] = getattr(model.config, k)
    tokens_per_iter = gradient_accumulation_steps * batch_size * block_size
    data_dir = dataloader.check_dataset(dataset, block_size)
vocab_size = model.config.vocab_size
if meta_vocab_size is not None and meta_vocab_size > vocab_size:
    raise UserError(f"dataset '{dataset}' has {meta_vocab_size} tokens but the model's vocab_size is "
                    f"{vocab_size}: it was made for another vocabulary")
model.activation_checkpointing = activation_checkpointing
if fsdp:  # before the optimizer, which then holds the shards
    sharding.shard(model, device, dtype, world_size, initialise_weights=not sharded_resume, compile=compile)
else:
    model.to(device)

# initialize a GradScaler; if enabled=False (any dtype but float16) it is a no-op
scaler = torch.amp.GradScaler(device_type, enabled=(dtype == 'float16'))
optimizer_name = optimizer  # the setting; `optimizer` is the optimizer from here on, as in nanoGPT
optimizer = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type, optimizer_name,
                                       muon_lr, muon_momentum, hw.muon_dtype)
if checkpoint is not None and not eval_only:  # an evaluation needs no optimizer state
    saved_with = 'muon' if set(checkpoint['optimizer']) == {'muon', 'adamw'} else 'adamw'
    if saved_with != optimizer_name:
        raise UserError(f"{out_dir}/ckpt.pt was trained with optimizer='{saved_with}': resume it with "
                        f"--optimizer={saved_with}")
    if sharded_resume:
        pass  # below, with the weights
    elif fsdp:
        sharding.load_optimizer(model, optimizer, checkpoint['optimizer'])
    else:
        optimizer.load_state_dict(checkpoint['optimizer'])
    if 'scaler' in checkpoint:
        scaler.load_state_dict(checkpoint['scaler'])
checkpoint = None  # free up memory
if sharded_resume:  # each rank reads the parts of the files that its shards (or whole tensors) need
    sharding.load_sharded(sharded_resume, model, None if eval_only else optimizer)

raw_model = model  # the bare GPT, for checkpoints and MFU
if compile and master_process:
    print("compiling the model... (takes a ~minute)")
elif eager_on_cpu and master_process:
    print("not compiling: compile=False is the default for float32 on a CPU, where torch.compile ran no faster "
          "than eager; --compile=True compiles")
if compile and not fsdp:  # (FSDP: sharding.shard compiled each block)
    model = torch.compile(model)
if ddp:
    # no buffer broadcast before every forward: the model's buffers (rotary tables) are constants
    model = DDP(model, device_ids=[local_rank] if device_type == 'cuda' else None, broadcast_buffers=False)

peak = hardware.peak_flops(device_type, dtype, device) if master_process else None
if master_process:
    print(f"{device}, {dtype}; MFU is measured against a peak of {peak.flops / 1e12:.3f} TFLOP/s ({peak.source})")


def save(reason, name='ckpt.pt'):
    """Write out_dir/<name> from the master; under FSDP or with sharded checkpoints every rank calls it."""
    global saved_iter
    if name == 'ckpt.pt':
        saved_iter = iter_num
    if checkpoint_format == 'sharded':  # every rank writes its own shards; the newest ckpt.dcp-<n> is resumed
        meta = make_checkpoint(raw_model, optimizer, iter_num, best_val_loss, config, data_tokenizer, model_state={},
                               optimizer_state={}, best_iter=saved_iter, command=command, scaler=scaler.state_dict())
        path = sharding.save_sharded(raw_model, optimizer, out_dir, meta)
        if master_process:
            print(f"saved sharded checkpoint {path} ({reason})")
        return
    states = sharding.full_state(raw_model, optimizer) if fsdp else (None, None)
    if not master_process:
        return
    ckpt = make_checkpoint(raw_model, optimizer, iter_num, best_val_loss, config, data_tokenizer,
                           model_state=states[0], optimizer_state=states[1], best_iter=saved_iter, command=command,
                           scaler=scaler.state_dict(), wandb_run_id=wandb_run_id)
    path = os.path.join(out_dir, name)
    save_checkpoint(ckpt, path)
    print(f"saving checkpoint to {path} ({reason})")
    if name == 'ckpt.pt' and os.path.exists(os.path.join(out_dir, 'resume.pt')):
        os.remove(os.path.join(out_dir, 'resume.pt'))  # ckpt.pt is the newest state now


def diverged(what):
    """The one-line error for a non-finite loss or weights: nothing non-finite is ever saved."""
    kept = (f"{out_dir}/ckpt.pt (iter {saved_iter}) is kept" if saved_iter is not None else
            "no checkpoint was saved before it")
    advice = "use dtype=bfloat16 or float32 (float16 overflows), or " if dtype == 'float16' else ""
    return UserError(f"{what} at iter {iter_num}: training diverged; {kept}. To go on, {advice}lower "
                     f"learning_rate or raise warmup_iters, then resume: {resume_command}")


# out_dir/log.jsonl is the training curve, one record per eval (a resumed run drops the records from iter_num on,
# which it replays, at its first record); --eval_only runs append to eval.jsonl instead, so a plot of the log never
# loops back. With wandb, a resumed run logs to the wandb run of its checkpoint (an --eval_only run is a wandb run of
# its own)
if master_process:
    log = loop.RunLog(os.path.join(out_dir, 'eval.jsonl' if eval_only else 'log.jsonl'),
                      keep_before=None if eval_only else iter_num,
                      wandb=(wandb_project, wandb_run_name, config) if wandb_log else None,
                      wandb_run_id=None if eval_only else wandb_run_id)
    wandb_run_id = log.wandb_run_id or wandb_run_id


def stop_run():
    """After a stop request: save what was trained, then exit 130. Non-finite weights are never written; with
    always_save_checkpoint=False ckpt.pt stays the best model and the state goes to resume.pt beside it (which
    --init_from=resume reads when it is the newer)."""
    if (master_process or every_rank_saves) and not eval_only and local_iter_num > 0:
        finite = weights_are_finite(raw_model)  # under FSDP, of this rank's shards; then the ranks agree
        if fsdp:
            finite = not loop.any_rank(not finite, device)
        if not finite:
            raise diverged("the weights became non-finite")
        keep_best = not always_save_checkpoint and saved_iter is not None
        save(f"interrupted at iter {iter_num}" + ("; ckpt.pt keeps the best model" if keep_best else ''),
             'resume.pt' if keep_best else 'ckpt.pt')
        if master_process:
            print(f"stopped by signal; resume with: {resume_command}")
    elif master_process:
        print("stopped by signal")
    if distributed:
        torch.distributed.barrier()  # torchrun ends every rank once one exits: the others wait for the master's save
        destroy_process_group()
    raise SystemExit(130)


# Ctrl-C and SIGTERM (a scheduler pre-empting the job) finish the current step, save, then exit; a long
# evaluation is cut short (one process: DDP ranks must all reach its all-reduce); a second signal stops at once
stopper = loop.GracefulStop()

# training loop
batches = dataloader.train_batches(data_dir, seed=seed, start_step=iter_num, batch_size=batch_size,
                                   block_size=block_size, grad_accum=gradient_accumulation_steps,
                                   micro_steps=micro_steps, rank=rank, vocab_size=vocab_size, device=device)
start_time = t0 = time.time()
step_times = []  # ms/iter of every logged step
running_mfu = -1.0
while True:
    lr = loop.get_lr(iter_num, learning_rate=learning_rate, warmup_iters=warmup_iters, lr_decay_iters=lr_decay_iters,
                     min_lr=min_lr, decay_lr=decay_lr)

    # evaluate the loss on train/val sets and write checkpoints
    if iter_num % eval_interval == 0 or iter_num >= max_iters or eval_only:
        losses = loop.estimate_loss(model, data_dir=data_dir, eval_iters=eval_iters, batch_size=batch_size,
                                    block_size=block_size, vocab_size=vocab_size, seed=seed, ctx=ctx, device=device,
                                    rank=rank, world_size=world_size, stopper=None if distributed else stopper,
                                    masked_targets=masked_targets)
        if losses is None:  # a stop request cut the evaluation short
            stop_run()
        if master_process:
            elapsed = time.time() - start_time
            print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f} "
                  f"({elapsed:.1f}s)")
        scores = {}
        if hellaswag is not None:  # every rank scores its share of the examples
            hs = score_choices(raw_model, hellaswag, batch_size=batch_size, ctx=ctx, device=device, rank=rank,
                               world_size=world_size, vocab_size=data_tokenizer.vocab_size)
            scores = {'hellaswag_acc': hs['acc'], 'hellaswag_acc_norm': hs['acc_norm']}
            if master_process:
                print(f"step {iter_num}: hellaswag acc_norm {hs['acc_norm']:.4f} on {hs['examples']:,} examples")
        if master_process:
            median_ms = sorted(step_times)[len(step_times) // 2] if step_times else None
            log.write({'iter': iter_num, 'train_loss': losses['train'], 'val_loss': losses['val'], 'lr': lr,
                       'ms_per_iter': median_ms,
                       'tokens_per_s': tokens_per_iter / median_ms * 1e3 if median_ms else None,
                       'mfu': running_mfu if running_mfu >= 0 else None, 'elapsed_s': elapsed, 'time': time.time(),
                       **scores})
        # the losses are all-reduced, so every rank decides alike (under FSDP every rank takes part in a save)
        if not (math.isfinite(losses['train']) and math.isfinite(losses['val'])):
            raise diverged(f"the loss became {losses['val']}")
        improved = losses['val'] < best_val_loss
        best_val_loss = min(best_val_loss, losses['val'])
        # max_iters=0 saves the model as initialised: the untrained baseline an evaluation compares against
        trained = local_iter_num > 0 or (max_iters == 0 and init_from == 'scratch')
        if not eval_only and trained and (improved or always_save_checkpoint) and (master_process or every_rank_saves):
            save('val loss improved' if improved else 'always_save_checkpoint')
    if eval_only or iter_num >= max_iters:
        break

    # forward/backward over micro_steps micro-batches (gradients synced on the last), clip, step, zero the grads;
    # the dropout masks come from (seed, rank, step) alone, so a resumed run draws the ones it would have drawn
    loop.seed_step(seed, rank, iter_num)
    kill_point(f"iter:{iter_num}:{rank}:{restart}")  # tests: a process lost mid-run (files.py)
    loss = loop.train_step(model, optimizer, batches, scaler=scaler, micro_steps=micro_steps, ctx=ctx,
                           grad_clip=grad_clip, lr=lr, masked_targets=masked_targets,
                           sync=None if not distributed or (fsdp and fsdp_reduce_every_micro_step) else parallelism)
    iter_num += 1
    local_iter_num += 1

    # timing and logging
    t1 = time.time()
    dt = t1 - t0
    t0 = t1
    # a stop request (Ctrl-C, SIGTERM) on any rank stops every rank after the same step. With several processes the
    # ranks agree on it at logging steps only, in the one all-reduce that also averages the loss over them (where
    # the master waits for the GPU anyway), not with a sync every step
    stop = stopper.requested
    if distributed:
        if iter_num % log_interval == 0:
            both = torch.stack([loss.float(), torch.tensor(float(stop), device=device)])
            torch.distributed.all_reduce(both)
            loss, stop = both[0] / world_size, both[1].item() > 0
        else:
            stop = False
    if iter_num % log_interval == 0 and master_process:
        lossf = loss.item()  # a CPU-GPU sync point; with several processes, the mean over all their micro-batches
        if not math.isfinite(lossf):
            raise diverged(f"the training loss became {lossf}")
        if local_iter_num >= 5:  # let the training loop settle a bit
            step_times.append(dt * 1000)
            mfu = peak.mfu(raw_model.estimate_mfu(batch_size * micro_steps, dt, 1.0, head_share=head_share))
            running_mfu = mfu if running_mfu == -1.0 else 0.9 * running_mfu + 0.1 * mfu
        print(f"iter {iter_num}: loss {lossf:.4f}, time {dt * 1000:.2f}ms, "
              f"tok/s {tokens_per_iter / dt:,.0f}, mfu {running_mfu * 100:.2f}%")

    if stop:
        stop_run()

if master_process and step_times:
    median_ms = sorted(step_times)[len(step_times) // 2]
    memory = f", peak memory {torch.cuda.max_memory_allocated(device) / 2**20:,.0f} MiB on {device}" if (
        device_type == 'cuda') else ''
    print(f"done: {local_iter_num} iters (to iter {iter_num}) in {time.time() - start_time:.1f}s, median {median_ms:.2f}ms/iter, "
          f"{tokens_per_iter / median_ms * 1e3:,.0f} tokens/s{memory}")
if distributed:
    destroy_process_group()
