"""
Benchmark the training step and generation: ms/iter, tokens/s and MFU.

The training step timed is loop.train_step, the function train.py calls, on a model and optimizer
built the way train.py builds them. MFU is measured against a stated peak (hardware.peak_flops, as train.py):
the GPU's published dense bf16 figure, or elsewhere the best matmul rate measured here at the run's dtype
(float32 on a CPU that only emulates bf16), in well under a second.

$ python bench.py --device=cpu                      # nanoGPT's CPU command's model (4 x 128, block 64)
$ python bench.py --n_layer=6 --n_head=6 --n_embd=384 --block_size=256 --batch_size=16 --dtype=float32
$ python bench.py --mode=generate --n_layer=6 --n_head=6 --n_embd=384 --block_size=1024 --gen_tokens=500
$ python bench.py --mode=quickstart --nanogpt_dir=../nanoGPT --rounds=3   # the README's CPU figures, beside nanoGPT's
$ torchrun --standalone --nproc_per_node=2 bench.py --mode=train --parallelism=fsdp   # peak memory per process, sharded
$ python bench.py --mode=recipes --ablation=True   # GPT-2's recipe against the modern one, 3 seeds, on full val
"""
import itertools
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

import torch

import dataloader
import hardware
import loop
from checkpoint import new_model
from model import RECIPE_FIELDS, sample_next
from configurator import REPO_DIR, UserError, configure, require_positive
from tokenizer import for_dataset

# -----------------------------------------------------------------------------
mode = 'all'  # 'train', 'generate', 'all' (both), 'quickstart' or 'recipes' (whole training runs: quickstart(), recipes())
# model: defaults are nanoGPT's CPU command's (its README: 4 x 128, block 64, batch 12; the quickstart has 2 layers)
n_layer = 4
n_head = 4
n_embd = 128
block_size = 64
dropout = 0.0
bias = False
# the modern recipe's switches (train.py, model.py's GPTConfig), all off: GPT-2's
rotary = False
rotary_base = 10000.0
qk_norm = False
rmsnorm = False
relu_squared = False
tie_embeddings = True
logit_softcap = 0.0
zero_init_proj = False
embedding_norm = False
# data
real_data = False  # True: batches from dataset's train.bin, as train.py reads them; False: one random batch
dataset = 'shakespeare_char'
vocab_size = 65  # for synthetic data (65 is shakespeare_char's); real data uses the dataset's vocabulary
batch_size = 12
gradient_accumulation_steps = 1
# optimizer, as train.py: 'adamw', or 'muon' (Muon for the blocks' matrices, AdamW for the rest)
optimizer = 'adamw'
muon_lr = 0.02
muon_momentum = 0.95
learning_rate = 1e-3
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.99
grad_clip = 1.0
activation_checkpointing = False  # recompute each block in the backward, as train.py --activation_checkpointing
parallelism = 'ddp'  # under torchrun: 'ddp' or 'fsdp' (sharding.py), as train.py
fsdp_reduce_every_micro_step = True  # as train.py: FSDP reduce-scatters each micro-step (False: the last only)
backend = 'auto'  # under torchrun: 'nccl' on CUDA, 'gloo' on CPU
# timing
warmup_steps = 10  # untimed steps first: allocator, caches, torch.compile
num_steps = 50  # timed steps; the median is reported
peak_matmul_size = 2048  # the measured peak (CPUs, unknown GPUs): n x n matmuls at the run's dtype, n at most this...
peak_repeats = 8  # ...the best of at most this many (hardware.probe_peak: under a second whatever the kernel's speed)
profile = False  # also run a few steps under torch.profiler and write Chrome traces to profile_dir
profile_dir = 'out-bench-profile'
# generation
gen_batch = 1
gen_prompt_len = 1
gen_tokens = None  # new tokens per sample; None fills the context (block_size - gen_prompt_len)
# --mode=quickstart
nanogpt_dir = ''  # a clone of karpathy/nanoGPT, to time its own train.py on its command side by side
rounds = 1  # alternating rounds of the runs; medians are printed
target_val = 1.87  # the val loss the quickstarts must reach (nanoGPT's command ends at 1.8857; the README says < 1.87)
# --mode=recipes
seeds = (1337, 1, 2)  # one round of runs per seed (--seeds=1337,1,2; one seed: --seeds=1337,)
full_val_iters = 1000  # val batches of the final evaluation of every run (the runs themselves print 20-batch evals)
ablation = False  # also the modern recipe with each of its switches (and Muon) set back to GPT-2's, one at a time
modern_args = ''  # more train.py arguments for the modern recipe's runs, e.g. '--max_iters=400 --lr_decay_iters=400'
# system
device = 'auto'  # 'auto', 'cpu', 'cuda', 'cuda:1', 'mps'
dtype = 'auto'  # 'float32', 'bfloat16', 'float16' or 'auto' (as train.py: hardware.resolve_dtype)
compile = False  # torch.compile the model, as train.py does by default (except for float32 on a CPU)
seed = 1337
# -----------------------------------------------------------------------------


def load_note():
    """The 1-minute load average: on a shared machine other processes slow every figure printed here."""
    load, cores = os.getloadavg()[0], os.cpu_count()
    busy = ': busy, other processes share the CPU, so timings are slower and noisier' if load > cores else ''
    return f"load average {load:.2f} on {cores} cores{busy}"


def sync(device_type):
    if device_type == 'cuda':
        torch.cuda.synchronize()


def profiled(name, fn, device_type):
    """Run fn under torch.profiler; write profile_dir/<name>.json (chrome://tracing or ui.perfetto.dev) and print
    the ops by self CPU time. Returns the profile."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device_type == 'cuda':
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
        fn()
    os.makedirs(profile_dir, exist_ok=True)
    path = os.path.join(profile_dir, f'{name}.json')
    prof.export_chrome_trace(path)
    print(prof.key_averages().table(sort_by=f'self_{"cuda" if device_type == "cuda" else "cpu"}_time_total',
                                    row_limit=12))
    print(f"wrote the {name} trace to {path}")
    return prof


# What each op of a training step is for, by its name (the first rule that matches wins). The ranges bench.py and
# torch label (batch loading, clip_grad_norm, the optimizer's step, the chunked loss's autograd Function) claim every
# op inside them first, and a cast claims its copy; a matmul with the vocabulary as one of its dimensions is
# lm_head's (or its gradient's).
STEP_PARTS = [
    ('batch loading', ('batch loading',)),
    ('AdamW (step, zero_grad)', ('Optimizer.',)),
    ('clip_grad_norm', ('clip_grad_norm',)),
    ('lm_head + loss, chunked (matmul, softmax, cast)', ('ChunkedCrossEntropy',)),  # model.py: a large vocab
    ('autocast casts', ('aten::_to_copy', 'ToCopyBackward')),
    ('attention, SDPA', ('scaled_dot_product', 'flash_attention')),
    ('attention, explicit', ('aten::bmm', 'aten::_softmax', 'aten::masked_fill', 'aten::triu')),
    ('cross-entropy (log-softmax, nll)', ('log_softmax', 'nll_loss', 'cross_entropy')),
    ('layernorm, GELU', ('layer_norm', 'gelu', 'rms_norm')),
    ('embeddings', ('embedding',)),
    ('matmuls (Linear)', ('aten::mm', 'aten::addmm', 'aten::matmul', 'aten::linear')),
]


def step_part(event, vocab):
    """The STEP_PARTS name of a profiled op, from the op and its enclosing ranges: 'other ops' when none fits."""
    names = []
    e = event
    while e is not None:
        names.append(e.name)
        e = e.cpu_parent
    for part, keys in STEP_PARTS:
        if any(key in n for n in reversed(names) for key in keys):  # the outermost range decides
            if part == 'matmuls (Linear)' and any(vocab in shape for shape in event.input_shapes or []):
                return 'matmuls (lm_head)'
            return part
    return 'other ops'


def step_shares(prof, steps, wall, vocab):
    """Print where the main thread's time of `steps` profiled training steps (wall seconds) went: the self CPU time
    of its ops grouped by step_part, per step and as a share of the step, and the rest (the time in no op: Python,
    the autograd engine's own work, the profiler's) as 'outside ops'."""
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CPU]
    main = next(e.thread for e in events if e.name.startswith('Optimizer.'))
    totals = {}
    for e in events:
        part = step_part(e, vocab) if e.thread == main else 'batch loading (its thread, overlapped)'
        totals[part] = totals.get(part, 0.0) + e.self_cpu_time_total / 1e3 / steps  # ms per step
    in_ops = sum(v for k, v in totals.items() if 'overlapped' not in k)
    totals['outside ops (Python, autograd engine, profiler)'] = wall * 1e3 / steps - in_ops
    step_ms = wall * 1e3 / steps
    print(f"train profile: {step_ms:.2f} ms/step under the profiler ({steps} steps); self CPU time per step:")
    for part, ms in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {part:48s} {ms:8.2f} ms  {100 * ms / step_ms:5.1f}%")


@contextmanager
def labelled(owner, attr, label):
    """owner.attr, a function, runs inside a profiler range named label for the block (its ops are then counted as
    that: clip_grad_norm_ has no range of its own)."""
    fn = getattr(owner, attr)

    def in_range(*args, **kwargs):
        with torch.profiler.record_function(label):
            return fn(*args, **kwargs)

    setattr(owner, attr, in_range)
    try:
        yield
    finally:
        setattr(owner, attr, fn)


def labelled_batches(batches):
    """The batches, each fetched inside a profiler range 'batch loading'."""
    while True:
        with torch.profiler.record_function('batch loading'):
            batch = next(batches)
        yield batch


def peak_memory(device_type):
    """(bytes, what they are): on CUDA the most the allocator held for tensors since the last reset; elsewhere
    the process's peak resident set size (all of it: torch itself, the data, every tensor), which is what the
    machine has to have."""
    if device_type == 'cuda':
        return torch.cuda.max_memory_allocated(), 'torch.cuda.max_memory_allocated'
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak * (1 if sys.platform == 'darwin' else 1024), "the process's peak RSS"


def synthetic_batches(device):
    """One fixed random (x, y) batch, forever: times the model alone, without data loading."""
    gen = torch.Generator().manual_seed(seed)
    x, y = (torch.randint(vocab_size, (batch_size, block_size), generator=gen).to(device) for _ in range(2))
    return itertools.repeat((x, y))


def bench_train(model, peak, ctx, device, device_type):
    """Time loop.train_step for warmup_steps + num_steps; print ms/iter, tokens/s, MFU and peak memory."""
    if device_type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    scaler = torch.amp.GradScaler(device_type, enabled=(dtype == 'float16'))
    opt = model.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type, optimizer, muon_lr,
                                     muon_momentum, hardware.muon_dtype(dtype, device_type))
    step_model = torch.compile(model) if compile and not fsdp else model  # (FSDP: sharding.shard compiled each block)
    if world_size > 1 and parallelism == 'ddp':
        step_model = torch.nn.parallel.DistributedDataParallel(step_model, device_ids=None if device_type != 'cuda'
                                                               else [torch.cuda.current_device()],
                                                               broadcast_buffers=False)  # as train.py
    if real_data:
        data_dir = dataloader.check_dataset(dataset, block_size)
        batches = dataloader.train_batches(data_dir, seed=seed, start_step=0, batch_size=batch_size,
                                           block_size=block_size, grad_accum=gradient_accumulation_steps,
                                           micro_steps=gradient_accumulation_steps, rank=0,
                                           vocab_size=model.config.vocab_size, device=device)
    else:
        batches = synthetic_batches(device)
    if profile:
        batches = labelled_batches(batches)

    masked = real_data and dataloader.has_answer_masks(data_dir)

    def step():
        loss = loop.train_step(step_model, opt, batches, scaler=scaler, micro_steps=gradient_accumulation_steps,
                               ctx=ctx, grad_clip=grad_clip, lr=learning_rate,
                               sync=None if world_size == 1 or (parallelism == 'fsdp' and fsdp_reduce_every_micro_step)
                               else parallelism, masked_targets=masked)
        return loss.item()  # waits for the step, as train.py's logging does

    times, losses = [], []
    for i in range(warmup_steps + num_steps):
        t0 = time.perf_counter()
        losses.append(step())
        sync(device_type)
        times.append(time.perf_counter() - t0)
    first, times = times[0], times[warmup_steps:]
    dt = statistics.median(times)
    print(f"train: first step {first:.2f} s (compile={compile}: compilation, allocator and caches warming up); loss "
          f"{losses[0]:.4f} at the first step, {losses[-1]:.4f} at the last")
    tokens_per_iter = batch_size * gradient_accumulation_steps * block_size
    head_share = dataloader.answer_share(data_dir, block_size) if masked else 1.0
    mfu = peak.mfu(model.estimate_mfu(batch_size * gradient_accumulation_steps, dt, 1.0, head_share=head_share))
    print(f"train: {dt * 1e3:.2f} ms/iter (median of {num_steps} steps after {warmup_steps} warm-up; "
          f"min {min(times) * 1e3:.2f}, max {max(times) * 1e3:.2f})")
    print(f"train: {tokens_per_iter / dt:,.0f} tokens/s ({tokens_per_iter:,} tokens/iter)")
    print(f"train: MFU {mfu * 100:.2f}% ({mfu * peak.flops / 1e9:.1f} of {peak.flops / 1e9:.1f} GFLOP/s)")
    memory, what = peak_memory(device_type)
    print(f"train: peak memory {memory / 2**20:,.0f} MiB ({what}; activation_checkpointing={activation_checkpointing})")
    if world_size > 1:  # every process's own figure: what each GPU (or CPU process) has to hold
        peaks = [None] * world_size
        torch.distributed.all_gather_object(peaks, memory)
        print(f"train: peak memory per process, {parallelism} over {world_size}: "
              + ', '.join(f"{p / 2**20:,.0f}" for p in peaks) + " MiB")
    if profile:
        steps = 10

        def profiled_steps():
            t0 = time.perf_counter()
            with labelled(torch.nn.utils, 'clip_grad_norm_', 'clip_grad_norm'):
                for _ in range(steps):
                    step()
            return time.perf_counter() - t0

        wall = []
        prof = profiled('train', lambda: wall.append(profiled_steps()), device_type)
        step_shares(prof, steps, wall[0], model.config.vocab_size)


def window_loop(model, idx, new_tokens):
    """nanoGPT's generate, to compare with: every step recomputes the last block_size tokens, with no cache."""
    for _ in range(new_tokens):
        logits, _ = model(idx[:, -model.config.block_size:])
        idx = torch.cat((idx, sample_next(logits[:, -1, :])), dim=1)
    return idx


@torch.no_grad()
def bench_generate(model, ctx, device, device_type):
    """Tokens/s of model.generate from a random prompt, with and without the KV cache. A rotary model also generates
    past block_size (its cache slides: model.generate_stream); there it is timed against nanoGPT's loop, which
    recomputes the last block_size tokens every step."""
    new_tokens = gen_tokens if gen_tokens is not None else block_size - gen_prompt_len
    past_context = gen_prompt_len + new_tokens > block_size
    if new_tokens < 1 or gen_prompt_len < 1 or (past_context and not model.config.rotary):
        raise UserError(f"gen_prompt_len ({gen_prompt_len}) + gen_tokens ({new_tokens}) must fit block_size "
                        f"({block_size}), both at least 1: past block_size a GPT-2 model recomputes its window every "
                        f"step; raise block_size (e.g. --block_size=1024), lower gen_tokens, or time a rotary "
                        f"model (--rotary=True), whose cache slides")
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    prompt = torch.randint(model.config.vocab_size, (gen_batch, gen_prompt_len), generator=gen).to(device)
    ways = {'cached': lambda n: model.generate(prompt, n)}
    if past_context:
        ways['recomputing the window'] = lambda n: window_loop(model, prompt, n)
    else:
        ways['uncached'] = lambda n: model.generate(prompt, n, use_cache=False)
    rates = {}
    for name, run in ways.items():
        with ctx:
            run(min(new_tokens, 8))  # warm-up
            sync(device_type)
            t0 = time.perf_counter()
            run(new_tokens)
            sync(device_type)
        dt = time.perf_counter() - t0
        rates[name] = gen_batch * new_tokens / dt
        print(f"generate ({name}): {gen_batch} x {new_tokens} tokens from a {gen_prompt_len}-token prompt in "
              f"{dt:.2f} s, {rates[name]:,.1f} tokens/s (block_size {block_size})")
    other = list(rates)[1]
    print(f"generate: the KV cache is {rates['cached'] / rates[other]:.2f}x faster than {other}")
    if profile:
        with ctx:
            profiled('generate', lambda: model.generate(prompt, new_tokens), device_type)
    model.train()


# -----------------------------------------------------------------------------
# --mode=quickstart: the README's CPU claims, measured by running train.py as a user would, side by side with
# nanoGPT's own train.py when a clone of it is given (nanogpt_dir), in alternating rounds

# nanoGPT's "macbook" command (its README), which both loops run unchanged
NANOGPT_COMMAND = ['config/train_shakespeare_char.py', '--device=cpu', '--compile=False', '--eval_iters=20',
                   '--log_interval=1', '--block_size=64', '--batch_size=12', '--n_layer=4', '--n_head=4',
                   '--n_embd=128', '--max_iters=2000', '--lr_decay_iters=2000', '--dropout=0.0']
QUICKSTART_COMMAND = ['config/train_shakespeare_char_cpu.py']
FAST_COMMAND = ['config/train_shakespeare_char_cpu_fast.py']  # the modern recipe's quickstart, for wall time
EVAL_LINE = re.compile(r'step (\d+): train loss ([\d.]+), val loss ([\d.]+)')  # both loops print these two
ITER_LINE = re.compile(r'iter (\d+): loss ([\d.]+), time ([\d.]+)ms')


def run_timed(args, cwd=REPO_DIR):
    """Run `python *args` in cwd. Returns its output lines, each paired with the wall seconds since the
    process was started (imports included), the total wall seconds, and the start as a Unix time."""
    started, start = time.time(), time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, 'PYTHONUNBUFFERED': '1'})
    lines = []
    for line in proc.stdout:
        lines.append((time.perf_counter() - start, line.rstrip('\n')))
        if EVAL_LINE.match(line):  # progress: the evals as they come
            print(f"  {lines[-1][0]:6.1f}s | {lines[-1][1]}", flush=True)
    wall = time.perf_counter() - start
    if proc.wait() != 0:
        tail = '\n'.join(line for _, line in lines[-15:])
        raise SystemExit(f"{tail}\npython {' '.join(args)} (in {cwd}) failed with exit code {proc.returncode}")
    return lines, wall, started


def parse_run(lines, target_val, log_records=None, started=None):
    """
    The figures of a training run, as a dict: evals [{iter, val_loss, wall_s (seconds after the process
    started)}]; crossing, the first eval with val_loss <= target_val, or None; ms_per_iter, the median step
    time from iter 5 on; first_step_s, when the first iteration line was printed (lines as run_timed returns).
    This repo's train.py gives its log.jsonl records (and the Unix time the process started): the figures are
    the log's, at full precision. nanoGPT's train.py writes no log, so its printed lines are read instead.
    """
    first_step_s = next((wall for wall, line in lines if ITER_LINE.match(line)), None)
    if log_records is not None:
        evals = [{'iter': r['iter'], 'val_loss': r['val_loss'], 'wall_s': r['time'] - started} for r in log_records]
        ms = log_records[-1]['ms_per_iter'] if log_records else None
    else:
        evals, step_ms = [], []
        for wall, line in lines:
            if m := EVAL_LINE.match(line):
                evals.append({'iter': int(m[1]), 'val_loss': float(m[3]), 'wall_s': wall})
            elif (m := ITER_LINE.match(line)) and int(m[1]) >= 5:  # train.py's own rule: from iter 5 on
                step_ms.append(float(m[3]))
        ms = sorted(step_ms)[len(step_ms) // 2] if step_ms else None  # the median as train.py takes it
    crossing = next((e for e in evals if e['val_loss'] <= target_val), None)
    return {'evals': evals, 'crossing': crossing, 'ms_per_iter': ms if ms is not None else float('nan'),
            'first_step_s': first_step_s}


def timed_train_run(name, args, out_dir, cwd=REPO_DIR, tokens_per_iter=768):
    """Run `python train.py *args --out_dir=out_dir` in cwd and print its figures; returns parse_run's dict
    with wall_s added. A run of this repo's train.py is read from its log.jsonl, nanoGPT's from its output."""
    print(f"\n[{name}] $ python train.py {' '.join(args)}\n  (in {cwd}, out_dir in a temp dir) {load_note()}",
          flush=True)
    lines, wall, started = run_timed(['train.py', *args, f'--out_dir={out_dir}'], cwd)
    log_path = os.path.join(out_dir, 'log.jsonl')
    log = [json.loads(line) for line in open(log_path)] if cwd == REPO_DIR else None
    run = {**parse_run(lines, target_val, log, started), 'wall_s': wall}
    cross = run['crossing']
    print(f"  {wall:.1f} s wall, first step {run['first_step_s']:.1f} s after start, final val loss "
          f"{run['evals'][-1]['val_loss']:.4f}, median {run['ms_per_iter']:.2f} ms/iter "
          f"({tokens_per_iter / run['ms_per_iter'] * 1e3:,.0f} tokens/s); "
          + (f"val <= {target_val} at iter {cross['iter']}, {cross['wall_s']:.1f} s after start" if cross else
             f"val never <= {target_val}"), flush=True)
    return run


def quickstart():
    """The two CPU quickstarts (GPT-2's recipe and the modern one) and nanoGPT's command through this repo's
    train.py, and nanoGPT's command through nanoGPT's own train.py when nanogpt_dir is set, `rounds` times in
    alternation; prints the medians, and each quickstart's wall to val <= target_val against nanoGPT's whole run
    (which ends at its 1.8857)."""
    dataloader.check_dataset('shakespeare_char', 64)  # says to run data/shakespeare_char/prepare.py if missing
    commands = {'ours': ("nanoGPT's command, this repo", NANOGPT_COMMAND),
                'ours_fp32': ("nanoGPT's command, this repo, float32", NANOGPT_COMMAND + ['--dtype=float32']),
                'quickstart': ('the CPU quickstart', QUICKSTART_COMMAND),
                'quickstart_fp32': ('the CPU quickstart, float32', QUICKSTART_COMMAND + ['--dtype=float32']),
                'fast': ("the CPU quickstart, modern recipe", FAST_COMMAND)}
    runs = {key: [] for key in ('nanogpt', *commands)}
    nanogpt = os.path.abspath(nanogpt_dir) if nanogpt_dir else None
    if nanogpt and not os.path.isfile(os.path.join(nanogpt, 'data', 'shakespeare_char', 'train.bin')):
        raise UserError(f"{nanogpt_dir}/data/shakespeare_char/train.bin not found: nanogpt_dir must be a "
                        f"clone of karpathy/nanoGPT with its shakespeare_char prepared (copy this repo's "
                        f"data/shakespeare_char/input.txt there and run its prepare.py)")
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            if nanogpt:
                runs['nanogpt'].append(timed_train_run("nanoGPT's loop", NANOGPT_COMMAND,
                                                       os.path.join(tmp, f'nanogpt{r}'), cwd=nanogpt))
            for key, (name, args) in commands.items():
                runs[key].append(timed_train_run(name, args, os.path.join(tmp, f'{key}{r}')))
    med = {k: {f: statistics.median(run[f] for run in v) for f in ('ms_per_iter', 'wall_s', 'first_step_s')}
           for k, v in runs.items() if v}
    print(f"\nmedians of {rounds} round(s):")
    for k, m in med.items():
        print(f"  {k}: {m['ms_per_iter']:.2f} ms/iter, {m['wall_s']:.1f} s wall, first step at {m['first_step_s']:.1f} s")
    if 'nanogpt' in med:
        for key, dtype in (('ours', "the default dtype"), ('ours_fp32', 'float32')):
            speedup = med['nanogpt']['ms_per_iter'] / med[key]['ms_per_iter']
            rounds_x = ', '.join(f"{n['ms_per_iter'] / o['ms_per_iter']:.2f}" for n, o in zip(runs['nanogpt'], runs[key]))
            print(f"  nanoGPT's command: this repo's train.py, {dtype}, runs at {speedup:.2f}x the tokens/s of "
                  f"nanoGPT's loop (float32 on a CPU; per round: {rounds_x})")
    for key in ('quickstart', 'quickstart_fp32', 'fast'):
        crossings = [run['crossing']['wall_s'] if run['crossing'] else None for run in runs[key]]
        reached = [c for c in crossings if c is not None]
        print(f"  {key}: val <= {target_val} in {len(reached)} of {rounds} round(s)" +
              (f", median {statistics.median(reached):.1f} s after start" if reached else ''))
        if reached and runs['nanogpt']:  # each round against nanoGPT's run of the same round: the CPU's speed drifts
            ratios = [c / n['wall_s'] for c, n in zip(crossings, runs['nanogpt']) if c is not None]
            print(f"    {statistics.median(ratios):.2f}x the wall of nanoGPT's run (per round: "
                  f"{', '.join(f'{x:.2f}' for x in ratios)})")


# -----------------------------------------------------------------------------
# --mode=recipes: nanoGPT's CPU model size trained with GPT-2's recipe and with the modern one (model.py's switches
# and Muon), seed by seed in alternation, every final model evaluated on full_val_iters val batches; with ablation, the
# modern recipe with one switch at a time set back to GPT-2's, for the same steps. The losses at a fixed step count
# are the same on every run; a budget of wall time is not, on a shared CPU whose speed drifts by 15-35% in minutes
# (an ablation at a fixed wall time, step counts from a short timing run, gave 20-35% more steps to some variants
# than to the reference), so each variant's cost is its ms/iter, printed beside its loss

MODERN_COMMAND = ['config/train_shakespeare_char_cpu_modern.py']
# GPT-2's recipe at the modern config's size (nanoGPT's 4 x 128): the quickstart's config with 4 layers, at the
# learning rate four layers take (3e-3; the quickstart's two take 6e-3)
GPT2_COMMAND = [*QUICKSTART_COMMAND, '--n_layer=4', '--learning_rate=3e-3', '--min_lr=3e-4']
GPT2_SETTINGS = {'rotary': 'False', 'qk_norm': 'False', 'rmsnorm': 'False', 'relu_squared': 'False',
                 'tie_embeddings': 'True', 'logit_softcap': '0.0', 'zero_init_proj': 'False', 'embedding_norm': 'False',
                 'optimizer': 'adamw'}


def full_val_loss(out_dir):
    """The val loss of out_dir/ckpt.pt on full_val_iters batches, through train.py --eval_only as a user runs it."""
    lines, _, _ = run_timed(['train.py', *QUICKSTART_COMMAND, f'--out_dir={out_dir}', '--init_from=resume',
                             '--eval_only=True', f'--eval_iters={full_val_iters}', '--dtype=float32'])
    return float(EVAL_LINE.match(next(line for _, line in lines if EVAL_LINE.match(line)))[3])


def recipe_run(name, args, out_dir):
    run = timed_train_run(name, [*args, '--always_save_checkpoint=True'], out_dir)  # ckpt.pt: the final model
    run['full_val'] = full_val_loss(out_dir)
    run['iters'] = run['evals'][-1]['iter']
    print(f"  final model: val loss {run['full_val']:.4f} on {full_val_iters:,} batches", flush=True)
    return run


def recipes():
    dataloader.check_dataset('shakespeare_char', 64)
    seed_list = [int(s) for s in seeds]
    runs = {'gpt2': [], 'modern': []}
    with tempfile.TemporaryDirectory() as tmp:
        for s in seed_list:
            runs['gpt2'].append(recipe_run(f"GPT-2's recipe, seed {s}", [*GPT2_COMMAND, f'--seed={s}'],
                                           os.path.join(tmp, f'gpt2-{s}')))
            runs['modern'].append(recipe_run(f"the modern recipe, seed {s}",
                                             [*MODERN_COMMAND, *modern_args.split(), f'--seed={s}'],
                                             os.path.join(tmp, f'modern-{s}')))
        figures = ('full_val', 'wall_s', 'ms_per_iter', 'iters', 'first_step_s')
        med = {k: {f: statistics.median(r[f] for r in v) for f in figures} for k, v in runs.items()}
        print(f"\nmedians over seeds {seed_list} (val loss on {full_val_iters:,} batches):")
        for k, m in med.items():
            print(f"  {k}: val {m['full_val']:.4f}, {m['iters']:.0f} steps, {m['wall_s']:.1f} s wall, "
                  f"{m['ms_per_iter']:.2f} ms/iter; per seed: " + ', '.join(f"{r['full_val']:.4f}" for r in runs[k]))
        g, m = med['gpt2'], med['modern']
        print(f"  the modern recipe: {m['iters'] / g['iters']:.2f}x the steps, {m['wall_s'] / g['wall_s']:.2f}x the "
              f"wall time, val {m['full_val'] - g['full_val']:+.4f}; it ends below GPT-2's in "
              f"{sum(a['full_val'] < b['full_val'] for a, b in zip(runs['modern'], runs['gpt2']))} of "
              f"{len(seed_list)} seeds")
        if not ablation:
            return
        modern_val = runs['modern'][0]['full_val']
        print(f"\nablation, seed {seed_list[0]}: each switch back to GPT-2's, for the modern recipe's {m['iters']:.0f} steps")
        for key, value in GPT2_SETTINGS.items():
            run = recipe_run(f"{key}={value}", [*MODERN_COMMAND, *modern_args.split(), f'--seed={seed_list[0]}',
                                                f'--{key}={value}'], os.path.join(tmp, f'ablate-{key}'))
            print(f"  {key}={value}: val {run['full_val']:.4f} ({run['full_val'] - modern_val:+.4f} against the "
                  f"modern recipe's {modern_val:.4f}), {run['ms_per_iter']:.1f} ms/iter", flush=True)


# -----------------------------------------------------------------------------
if __name__ == '__main__':
    configure(globals())
    if mode not in ('train', 'generate', 'all', 'quickstart', 'recipes'):
        raise UserError(f"mode must be 'train', 'generate', 'all', 'quickstart' or 'recipes', got '{mode}'")
    if mode == 'quickstart':
        require_positive(globals(), 'rounds')
        quickstart()
        sys.exit(0)
    if mode == 'recipes':
        require_positive(globals(), 'full_val_iters')
        recipes()
        sys.exit(0)
    if parallelism not in ('ddp', 'fsdp'):
        raise UserError(f"parallelism must be 'ddp' or 'fsdp', got '{parallelism}'")
    hw = hardware.setup(device, dtype, keep_freed=parallelism != 'fsdp')  # as train.py
    device_type, dtype, ctx = hw.device_type, hw.dtype, hw.ctx
    rank, _, world_size, device = hardware.init_distributed(hw.device, backend)  # one process: 0, 0, 1
    if world_size > 1 and mode != 'train':
        raise UserError("under torchrun bench.py times the training step (--mode=train); generation runs in one process")
    if rank != 0:  # one process prints; the others' peak memory reaches it through all_gather_object
        sys.stdout = open(os.devnull, 'w')
    if real_data:
        vocab_size = for_dataset(dataset).model_vocab_size  # a new model's rows for it, as train.py makes one
    torch.manual_seed(seed)
    fsdp = world_size > 1 and parallelism == 'fsdp'
    with torch.device('meta' if fsdp else 'cpu'):  # FSDP: shapes only, then each rank's shards (as train.py)
        model = new_model(block_size=block_size, vocab_size=vocab_size, n_layer=n_layer, n_head=n_head,
                          n_embd=n_embd, dropout=dropout, bias=bias, **{k: globals()[k] for k in RECIPE_FIELDS})
    model.activation_checkpointing = activation_checkpointing
    if fsdp:
        import sharding  # only here: torch.distributed.checkpoint and fsdp add a second to every start-up
        sharding.shard(model, device, dtype, world_size, compile=compile)
    else:
        model.to(device)
    print(f"{device}, {dtype}, compile={compile}, {'real' if real_data else 'synthetic'} data, "
          f"{model.get_num_params() / 1e6:.2f}M params, {torch.get_num_threads()} threads; {load_note()}")
    if mode in ('train', 'all'):
        peak = hardware.peak_flops(device_type, dtype, device, max_n=peak_matmul_size, max_reps=peak_repeats)
        print(f"peak: {peak.flops / 1e12:.3f} TFLOP/s ({peak.source})")
        bench_train(model, peak, ctx, device, device_type)
    if mode in ('generate', 'all'):
        bench_generate(model, ctx, device, device_type)
    if world_size > 1:
        torch.distributed.barrier()  # no rank tears gloo down while another's last collective is in flight
        torch.distributed.destroy_process_group()
