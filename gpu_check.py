"""
Check the main job on the GPUs this machine has, in one command: GPT-2 124M's training step (compiled, eager,
float16), 50 real steps with a checkpoint and an exact resume, DDP and FSDP under torchrun, generation with and
without the KV cache, the export against transformers' logits, and eval_tasks.py. Every check runs the commands a
user runs (train.py, torchrun, bench.py, sample.py, export.py, eval_tasks.py), each with a time limit, and one
failing check does not stop the others. About 6 minutes on one H100 or H200.

$ python gpu_check.py --report=gpu_check.json      # on a GPU machine: a table, and the same rows as JSON
$ python gpu_check.py --device=cpu                 # every check shrunk to seconds: a dry run (the suite runs it)

Each row: the check, its status (pass, fail: why, or skipped: why), its figure, its target, and the exact commands.
Without CUDA every row is "skipped: no CUDA", never a pass. On --device=cpu a row that ran reads "ran (cpu dry run)":
the commands work, and the functional targets (the loss falls, resume continues, cached text equals uncached,
logits match) are checked; the speed targets are a GPU's and are not judged there.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

from configurator import REPO_DIR, UserError, configure

# -----------------------------------------------------------------------------
device = 'cuda'  # 'cuda': the checks at GPT-2 124M's shape on this machine's GPUs; 'cpu': a tiny dry run
report = ''  # also write the rows as JSON to this file
work_dir = ''  # where the runs, data and exports go; '' = a temporary directory, removed at the end
budget_s = 330  # checks that would start after this many seconds are skipped (each has its own time limit too)
only = ''  # run only the checks whose name contains this text (e.g. --only=torchrun for a second run); '' = all
# the 'hf_parity' check's own process (python gpu_check.py --part=hf_parity ...): our logits against transformers'
part = ''
out_dir = ''
hf_dir = ''
# -----------------------------------------------------------------------------


class Failed(Exception):
    """A check's command failed or its figure missed a functional target: the row says why."""


class Skipped(Exception):
    """A check that cannot run here (out of GPU memory, or the run it reads failed): the row says why."""


def shown(args):
    """The command as a user types it: python, or torchrun for torch.distributed.run."""
    if args[:3] == [sys.executable, '-m', 'torch.distributed.run']:
        return shlex.join(['torchrun', *args[3:]])
    return shlex.join(['python', *args[1:]]) if args[0] == sys.executable else shlex.join(args)


class Check:
    """One row of the table: runs its commands through run(), which records each and bounds it in time."""

    def __init__(self, name, target):
        self.name, self.target, self.commands, self.figure = name, target, [], ''

    def run(self, *args, timeout, torchrun=None):
        """python args... (or torchrun --nproc_per_node=torchrun ...) in the repo; its output, or Failed."""
        cmd = ([sys.executable, '-m', 'torch.distributed.run', '--standalone', f'--nproc_per_node={torchrun}']
               if torchrun else [sys.executable]) + [str(a) for a in args]
        self.commands.append(shown(cmd))
        try:
            proc = subprocess.run(cmd, cwd=REPO_DIR, capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, 'PYTHONUNBUFFERED': '1'})
        except subprocess.TimeoutExpired:
            raise Failed(f"timed out after {timeout} s: {shown(cmd)}") from None
        out = proc.stdout + proc.stderr
        if proc.returncode != 0:
            if 'OutOfMemoryError' in out or 'CUDA out of memory' in out:
                raise Skipped('out of GPU memory')
            last = [line for line in out.splitlines() if line.strip()][-1:] or ['']
            raise Failed(f"exit code {proc.returncode}: {last[0][:200]}")
        return out


def number(pattern, text):
    """The float that pattern's group 1 matches in text (commas allowed), or Failed."""
    m = re.search(pattern, text, re.M)
    if not m:
        raise Failed(f"no line matching {pattern!r} in the output")
    return float(m[1].replace(',', ''))


def iter_losses(out):
    """{iter: loss} of train.py's 'iter N: loss X' lines."""
    return {int(m[1]): float(m[2]) for m in re.finditer(r'^iter (\d+): loss ([\d.]+|nan|inf)', out, re.M)}


# -----------------------------------------------------------------------------
# the checks

def train_step(check, micro_batch, compiled, dtype):
    """bench.py's training step at the model's shape: ms/iter, tokens/s, MFU (against the named peak), memory."""
    out = check.run('bench.py', '--mode=train', *MODEL, '--vocab_size=50304', f'--batch_size={micro_batch}',
                    f'--dtype={dtype}', f'--compile={compiled}', f'--device={device}', *STEPS, timeout=T['bench'])
    ms, mfu = number(r'train: ([\d.]+) ms/iter', out), number(r'train: MFU ([\d.]+)%', out)
    first = number(r'loss ([\d.]+|nan|inf) at the first step', out)
    last = number(r'([\d.]+|nan|inf) at the last', out)
    tokens, memory = number(r'train: ([\d,]+) tokens/s', out), number(r'train: peak memory ([\d,]+) MiB', out)
    # the peak as stated or measured at the start, or as measured again after a step beat it (hardware.Peak)
    peak = re.findall(r'^peak: (.*)$|the peak is now (.*)$', out, re.M)[-1]
    peak, compile_s = peak[0] or peak[1], number(r'first step ([\d.]+) s', out)
    check.figure = (f"{ms:.1f} ms/iter, {tokens:,.0f} tok/s, MFU {mfu:.1f}% of {peak}; peak memory {memory:,.0f} "
                    f"MiB; first step {compile_s:.1f} s; loss {first:.3f} -> {last:.3f}")
    if not last < first:
        raise Failed(f"the loss did not fall: {first} -> {last}")
    return mfu >= 45 if check.target.startswith('MFU') else True


def prepare_data(check):
    """The BPE tiny Shakespeare (GPT-2's tokenizer, offline), prepared once into the work directory."""
    if not os.path.isfile(f'{WORK}/shakespeare/val.bin'):
        check.run('data/shakespeare/prepare.py', f'--out_dir={WORK}/shakespeare', timeout=T['train'])


def fifty_steps_and_resume(check):
    """50 real steps on the BPE tiny Shakespeare: the loss falls, ckpt.pt is written, and a run stopped at 25 and
    resumed prints the losses of the uninterrupted run."""
    prepare_data(check)
    full = check.run('train.py', *TRAIN, f'--out_dir={WORK}/full', f'--max_iters={ITERS}', timeout=T['train'])
    check.run('train.py', *TRAIN, f'--out_dir={WORK}/part', f'--max_iters={ITERS // 2}', timeout=T['train'])
    resumed = check.run('train.py', *TRAIN, f'--out_dir={WORK}/part', f'--max_iters={ITERS}', '--init_from=resume',
                        timeout=T['train'])
    a, b = iter_losses(full), iter_losses(resumed)
    after = [i for i in range(ITERS // 2 + 1, ITERS + 1)]
    if not all(i in a and i in b for i in after):
        raise Failed(f"iterations {after[0]}..{after[-1]} are not all printed by both runs")
    worst = max(abs(a[i] - b[i]) for i in after)
    check.figure = (f"loss {a[1]:.3f} -> {a[ITERS]:.3f}; resumed at {ITERS // 2}: max |loss - uninterrupted| "
                    f"{worst:.2e} over iters {after[0]}-{after[-1]}")
    if not a[ITERS] < a[1]:
        raise Failed(f"the loss did not fall: {check.figure}")
    if not os.path.isfile(f'{WORK}/full/ckpt.pt'):
        raise Failed("no ckpt.pt was written")
    if worst > RESUME_TOLERANCE:
        raise Failed(f"the resumed run departs from the uninterrupted one: {check.figure}")
    return True


def distributed(check, parallelism, checkpointing, sample):
    """torchrun over every GPU, 20 steps: tokens/s and memory; then (sample) its ckpt.pt loads in one process."""
    prepare_data(check)
    run_dir = f'{WORK}/{parallelism}-ac{int(checkpointing)}'
    out = check.run('train.py', *TRAIN, f'--out_dir={run_dir}', f'--max_iters={DIST_ITERS}',
                    f'--eval_interval={DIST_ITERS}', f'--eval_iters={2 * NPROC}',
                    f'--gradient_accumulation_steps={NPROC}', f'--parallelism={parallelism}',
                    f'--activation_checkpointing={checkpointing}', torchrun=NPROC, timeout=T['torchrun'])
    done = re.search(r'^done: .*$', out, re.M)
    if not done:
        raise Failed("no 'done:' line")
    if sample:
        check.run('sample.py', f'--out_dir={run_dir}', '--num_samples=1', '--max_new_tokens=16', f'--device={device}',
                  timeout=T['sample'])
    memory = re.search(r'peak memory ([\d,]+ MiB)', done[0])
    tokens = number(r'([\d,]+) tokens/s', done[0])
    check.figure = (f"{tokens:,.0f} tok/s over {NPROC} process(es)" + (f", {memory[1]} on rank 0" if memory else '')
                    + ("; ckpt.pt sampled by sample.py" if sample else ''))
    return True


def generation(check):
    """Tokens/s with and without the KV cache at the model's shape, on a random model."""
    out = check.run('bench.py', '--mode=generate', *MODEL, '--vocab_size=50304', f'--gen_tokens={GEN_TOKENS}',
                    f'--device={device}', '--dtype=bfloat16' if device == 'cuda' else '--dtype=float32',
                    timeout=T['bench'])
    cached = number(r'generate \(cached\): .* ([\d,.]+) tokens/s', out)
    uncached = number(r'generate \(uncached\): .* ([\d,.]+) tokens/s', out)
    check.figure = f"{cached:,.0f} tok/s cached, {uncached:,.0f} uncached: {cached / uncached:.1f}x"
    return cached / uncached >= 5


def greedy_text(check):
    """sample.py's greedy text from the 50-step model, with and without the KV cache, in float32."""
    args = ['sample.py', f'--out_dir={WORK}/full', '--temperature=0', '--num_samples=1',
            f'--max_new_tokens={GEN_TOKENS // 5}', '--dtype=float32', f'--device={device}']
    texts = [[line for line in check.run(*args, f'--use_cache={c}', timeout=T['sample']).splitlines()
              if not line.startswith('Overriding:')] for c in (True, False)]  # configurator echoes the setting
    if texts[0] != texts[1]:
        raise Failed("the cached and uncached greedy texts differ")
    check.figure = f"the same {GEN_TOKENS // 5} greedy tokens both ways"
    return True


def export_parity(check):
    check.run('export.py', f'--out_dir={WORK}/full', f'--hf_dir={WORK}/hf', '--overwrite=True', timeout=T['sample'])
    out = check.run('gpu_check.py', '--part=hf_parity', f'--out_dir={WORK}/full', f'--hf_dir={WORK}/hf',
                    f'--device={device}', timeout=T['sample'])
    fp32, bf16 = number(r'float32: max \|diff\| ([\d.e+-]+)', out), number(r'bfloat16: max \|diff\| ([\d.e+-]+)', out)
    check.figure = f"max |logits - transformers'|: {fp32:.1e} in float32, {bf16:.1e} in bf16 autocast"
    if fp32 > 1e-4:
        raise Failed(check.figure)
    return bf16 <= 1e-3


def eval_throughput(check):
    check.run('data/hellaswag/prepare.py', '--input=tests/data/hellaswag_tiny.jsonl', f'--out_dir={WORK}/hellaswag',
              timeout=T['sample'])
    check.run('eval_tasks.py', f'--out_dir={WORK}/full', f'--task={WORK}/hellaswag/val.jsonl',
              f'--out_file={WORK}/eval.json', f'--device={device}', timeout=T['sample'])
    with open(f'{WORK}/eval.json') as f:
        result = json.load(f)
    check.figure = (f"{result['examples'] / result['seconds']:,.1f} examples/s ({result['examples']} examples, "
                    f"acc_norm {result['acc_norm']:.3f})")
    return True


# -----------------------------------------------------------------------------
# hf_parity: our model's logits against transformers' on the exported directory, in float32 and bf16 autocast

def hf_parity():
    import torch
    from transformers import AutoModelForCausalLM

    import hardware
    from checkpoint import load_model
    hw = hardware.setup(device, 'float32')
    torch.backends.cuda.matmul.fp32_precision = 'ieee'  # float32 both sides: no TF32 rounding in the comparison
    ours = load_model('resume', out_dir, dropout=0.0)[0].eval().to(hw.device)
    theirs = AutoModelForCausalLM.from_pretrained(hf_dir).eval().to(hw.device)
    vocab = theirs.config.vocab_size
    idx = torch.randint(vocab, (2, ours.config.block_size), generator=torch.Generator().manual_seed(0)).to(hw.device)
    with torch.no_grad():
        for dtype in ('float32', 'bfloat16'):
            with hardware.autocast_context(hw.device_type, dtype):
                a = ours(idx, all_logits=True)[0][..., :vocab].float()
                b = theirs(idx).logits.float()
            print(f"{dtype}: max |diff| {(a - b).abs().max().item():.3e} (logits up to {b.abs().max().item():.1f})")


# -----------------------------------------------------------------------------

def header():
    """(lines naming the machine and software, the number of CUDA GPUs)."""
    import torch

    import hardware
    names, driver = hardware.cuda_gpus()
    lines = [f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}, "
             f"CUDA {torch.version.cuda}"]
    if names:
        lines.append(f"{len(names)} x {', '.join(sorted(set(names)))}, driver {driver}")
    return lines, len(names)


def main():
    global MODEL, STEPS, TRAIN, WORK, ITERS, DIST_ITERS, NPROC, GEN_TOKENS, RESUME_TOLERANCE, T
    if device not in ('cuda', 'cpu'):
        raise UserError(f"device must be 'cuda' (the check) or 'cpu' (its dry run), got '{device}'")
    lines, gpus = header()
    gpu = device == 'cuda'
    if gpu:  # GPT-2 124M
        MODEL = ['--n_layer=12', '--n_head=12', '--n_embd=768', '--block_size=1024']
        STEPS, ITERS, DIST_ITERS, NPROC, GEN_TOKENS = ['--warmup_steps=5', '--num_steps=20'], 50, 20, gpus, 500
        RESUME_TOLERANCE, precision, batch = 2e-2, ['--dtype=bfloat16'], 8  # bf16's rounding; printed to 4 decimals
        T = {'bench': 150, 'train': 90, 'torchrun': 120, 'sample': 60}
    else:  # the dry run: a tiny model, every check in seconds
        MODEL = ['--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=32']
        STEPS, ITERS, DIST_ITERS, NPROC, GEN_TOKENS = ['--warmup_steps=1', '--num_steps=2'], 8, 6, 1, 25
        RESUME_TOLERANCE, precision, batch = 1e-4, ['--dtype=float32'], 2
        T = {'bench': 60, 'train': 60, 'torchrun': 60, 'sample': 60}
    own_dir = not work_dir
    WORK = tempfile.mkdtemp(prefix='gpu-check-') if own_dir else os.path.abspath(work_dir)
    os.makedirs(WORK, exist_ok=True)
    TRAIN = [f'--dataset={WORK}/shakespeare', *MODEL, f'--device={device}', *precision, '--compile=False',
             f'--batch_size={batch}', '--gradient_accumulation_steps=1', f'--eval_interval={ITERS // 2}',
             '--eval_iters=4', '--log_interval=1',
             '--warmup_iters=5', '--learning_rate=6e-4', '--min_lr=6e-5', f'--lr_decay_iters={ITERS}',
             '--always_save_checkpoint=True']
    mb = (16, 32, 64) if gpu else (2,)
    half = 'bfloat16' if gpu else 'float32'
    compiled = [(f"train step, micro-batch {m}, compile={gpu}", "MFU >= 45%",
                 lambda c, m=m: train_step(c, m, gpu, half)) for m in mb]
    # the most telling first: past budget_s the rest are skipped, and --only reruns them
    checks = compiled[:2] + [
        ("train step, compile=False", "runs, loss falls", lambda c: train_step(c, mb[0], False, half)),
        ("train step, float16 + GradScaler", "runs, loss falls", lambda c: train_step(c, mb[0], False, 'float16')),
        (f"{ITERS} steps, ckpt.pt, resume", f"loss falls; resumed = uninterrupted within {RESUME_TOLERANCE:g}",
         fifty_steps_and_resume),
        ("generation, KV cache", "cached >= 5x uncached", generation),
        ("greedy text, cached vs uncached", "the same text", greedy_text),
        ("export vs transformers' logits", "<= 1e-4 float32, <= 1e-3 bf16", export_parity),
        ("eval_tasks.py multiple choice", "runs (examples/s)", eval_throughput)]
    for parallelism, ac in (('ddp', False), ('fsdp', True), ('ddp', True), ('fsdp', False)):
        loads = ac == (parallelism == 'fsdp')  # sample.py loads one ckpt.pt of each parallelism
        checks.append((f"torchrun {parallelism}{', activation ckpt' if ac else ''}",
                       f"{DIST_ITERS} steps" + ("; ckpt.pt loads in one process" if loads else ''),
                       lambda c, p=parallelism, a=ac, s=loads: distributed(c, p, a, s)))
    checks += compiled[2:]
    # the dry run keeps every kind of command once: on a CPU 'train step, compile=False' is the first row's command,
    # and one torchrun row (FSDP with activation checkpointing) runs distributed() for all four; CPU processes start
    # slowly, and the suite runs the DDP paths on their own
    dry_skip = {'train step, compile=False', 'torchrun ddp', 'torchrun ddp, activation ckpt', 'torchrun fsdp'}

    rows, start = [], time.time()
    for name, target, fn in checks:
        check = Check(name, target)
        if gpu and not gpus:
            status = 'skipped: no CUDA'
        elif not gpu and name in dry_skip:
            status = 'skipped: the cpu dry run runs each kind of command once (see dry_skip)'
        elif only and only not in name:
            status = f'skipped: --only={only}'
        elif time.time() - start > budget_s:
            status = f'skipped: past the {budget_s} s budget'
        else:
            try:
                if fn in (greedy_text, export_parity, eval_throughput) and not os.path.isfile(f'{WORK}/full/ckpt.pt'):
                    raise Skipped(f"no {ITERS}-step checkpoint (that check failed)")
                passed = fn(check)
                status = ('pass' if passed else 'fail: below target') if gpu else 'ran (cpu dry run)'
            except Failed as e:
                status = f'fail: {e}'
            except Skipped as e:
                status = f'skipped: {e}'
            except Exception as e:  # a bug in this script's own parsing: the row says so, the others still run
                status = f'fail: {type(e).__name__}: {e}'
        rows.append({'check': name, 'status': status, 'figure': check.figure, 'target': target,
                     'commands': check.commands})
        print(f"[{time.time() - start:5.0f} s] {name}: {status}", flush=True)
    if own_dir:
        shutil.rmtree(WORK, ignore_errors=True)

    print()
    for line in lines:
        print(line)
    print(f"python gpu_check.py --device={device}: {time.time() - start:.0f} s\n")
    width = max(len(r['check']) for r in rows)
    for r in rows:
        print(f"{r['check']:<{width}}  {r['status'][:60]:<18}  {r['figure']}  [target: {r['target']}]")
        for command in r['commands']:
            print(f"{'':<{width}}    $ {command}")
    if report:
        with open(report, 'w') as f:
            json.dump({'header': lines, 'device': device, 'rows': rows}, f, indent=1)
        print(f"\nwrote {report}")
    return rows


if __name__ == '__main__':
    configure(globals())
    if part == 'hf_parity':
        hf_parity()
    elif part:
        raise UserError(f"part must be 'hf_parity' or empty, got '{part}'")
    else:
        main()
