"""
What the hardware does, decided in one place for every script: the device, the precision ('auto' is the
fastest one that is accurate here), the autocast context, the peak FLOP/s that MFU is measured against, and on a
CPU, whether freed memory is kept for reuse or, under FSDP, given back (keep_freed_memory).

Precision follows the hardware, not a guess about it. A CPU with native bf16 (avx512_bf16 or AMX on x86,
bf16 instructions on ARM) trains bf16 autocast several times faster than float32; on a CPU without them
(AVX2-class: most laptops, AMD before Zen 4) torch emulates bf16 matmuls in a slow scalar kernel, about 100x
slower than float32, so 'auto' means float32 there.

The hardware decides only what 'auto' means. An explicit dtype is the precision of every computation of the run,
Muon's iteration included, on every machine: a float32 run gives the same numbers on either kind of CPU. The one
exception is a half-precision run where bf16 is emulated: its Muon iteration stays in float32 (muon_dtype).

GPT_CPU_BF16=native or =emulated in the environment stands in for torch's report of the CPU's bf16, so one machine
can show (and the tests check) what every capability-dependent path does on the other kind of CPU.
"""
import ctypes
import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass

import torch

from configurator import UserError, install_error_hook

DTYPES = ('float32', 'bfloat16', 'float16')


# -----------------------------------------------------------------------------
# device and precision

def resolve_device(device):
    if device == 'auto':
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    return device


def cpu_capabilities():
    """torch's report of this CPU's instruction sets (torch.cpu.get_capabilities): a dict of flags."""
    get = getattr(torch.cpu, 'get_capabilities', None)  # torch >= 2.8
    return dict(get()) if get is not None else {}


CPU_BF16_VARIABLE = 'GPT_CPU_BF16'


def cpu_has_native_bf16(capabilities=None):
    """Whether this CPU computes bf16 matmuls in hardware: avx512_bf16 or amx_bf16 on x86; on ARM, the
    bf16 extension, and only if a small bf16 matmul actually beats float32 (some builds lack the kernels).
    `capabilities` is torch's report (cpu_capabilities()); tests pass a fake one. GPT_CPU_BF16 overrides both."""
    forced = os.environ.get(CPU_BF16_VARIABLE, '')
    if forced:
        if forced not in ('native', 'emulated'):
            raise UserError(f"{CPU_BF16_VARIABLE}={forced}: set it to 'native' or 'emulated' (what to take this "
                            f"CPU's bf16 for), or unset it to use what the CPU reports")
        return forced == 'native'
    caps = cpu_capabilities() if capabilities is None else capabilities
    if caps.get('avx512_bf16') or caps.get('amx_bf16'):
        return True
    if caps.get('bf16') or caps.get('sve_bf16'):  # the names torch reports for ARM's extension
        return _bf16_matmul_is_faster()
    return False


@functools.cache
def _bf16_matmul_is_faster(n=256, reps=3):
    """A few small matmuls in each dtype (milliseconds where bf16 is native, ~0.1 s where it is not)."""
    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.ones(n, n, dtype=dtype), torch.ones(n, n, dtype=dtype)
        a @ b  # warm-up
        best[dtype] = min(_timed(lambda: a @ b) for _ in range(reps))
    return best[torch.bfloat16] < best[torch.float32]


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cpu_dtype_is_native(dtype, capabilities=None):
    """Whether this CPU has matmul instructions for dtype (float32 always; bf16 see cpu_has_native_bf16;
    float16 avx512_fp16 or amx_fp16). Elsewhere torch emulates it, many times slower than float32."""
    caps = cpu_capabilities() if capabilities is None else capabilities
    if dtype == 'bfloat16':
        return cpu_has_native_bf16(caps)
    if dtype == 'float16':
        return bool(caps.get('avx512_fp16') or caps.get('amx_fp16'))
    return True


def resolve_dtype(dtype, device_type, capabilities=None):
    """
    The precision a run computes in. 'auto': on CUDA bfloat16 where the GPU has it, else float16 (with a
    GradScaler); on a CPU bfloat16 only where it is native (cpu_has_native_bf16), else float32; on MPS
    float32. A half precision forced on a CPU that only emulates it runs, after one warning line on stderr.
    `capabilities`: torch's CPU report (cpu_capabilities()); tests pass a fake one.
    """
    if dtype not in DTYPES + ('auto',):
        raise UserError(f"dtype must be 'float32', 'bfloat16', 'float16' or 'auto', got '{dtype}'")
    if device_type == 'cpu':
        if dtype == 'auto':
            return 'bfloat16' if cpu_has_native_bf16(capabilities) else 'float32'
        if not cpu_dtype_is_native(dtype, capabilities):
            print(f"warning: dtype={dtype} is emulated on this CPU (it has no {dtype} matmul instructions) and "
                  f"runs many times slower than float32 (Muon's iteration stays in float32); use --dtype=float32 or "
                  f"--dtype=auto",
                  file=sys.stderr, flush=True)
        return dtype
    if dtype != 'auto':
        return dtype
    if device_type == 'cuda':
        return 'bfloat16' if cuda_has_native_bf16() else 'float16'
    return 'float32'


def cuda_has_native_bf16():
    """bf16 tensor cores (Ampere on): torch's default check also counts GPUs that only emulate bf16 (V100, T4)."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


def cuda_gpus():
    """(the names of this machine's CUDA GPUs, the NVIDIA driver's version or None): what a report of a GPU run
    states beside its figures (gpu_check.py)."""
    if not torch.cuda.is_available():
        return [], None
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    smi = shutil.which('nvidia-smi')
    query = [smi, '--query-gpu=driver_version', '--format=csv,noheader'] if smi else None
    driver = subprocess.run(query, capture_output=True, text=True).stdout.split('\n')[0] if query else None
    return names, driver


def muon_dtype(dtype, device_type):
    """
    The precision of Muon's Newton-Schulz iteration in a run at `dtype` (resolved): the run's own. A float32 run
    iterates in float32 on every machine; a bf16 or fp16 run in bfloat16, as torch.optim.Muon and modded-nanogpt
    do, except where bf16 is emulated (a CPU without native bf16, a GPU before Ampere): there in float32.
    """
    if dtype == 'float32':
        return 'float32'
    if device_type == 'cpu':
        return 'bfloat16' if cpu_has_native_bf16() else 'float32'
    if device_type == 'cuda':
        return 'bfloat16' if cuda_has_native_bf16() else 'float32'
    return 'bfloat16' if dtype == 'bfloat16' else 'float32'


def autocast_context(device_type, dtype):
    if dtype == 'float32':
        return nullcontext()
    return torch.autocast(device_type=device_type, dtype=getattr(torch, dtype))


def check_device(device, device_type):
    """A UserError if this machine has no such device: torch would only fail later, with an AssertionError
    or a RuntimeError traceback from deep inside the first .to(device)."""
    fix = "use --device=cpu, or --device=auto (CUDA where there is a GPU, else the CPU)"
    if device_type == 'cuda':
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = '; this torch is a CPU-only build' if torch.version.cuda is None else ''
            raise UserError(f"--device={device}: this machine has no CUDA GPU that torch can use{build}; {fix}")
        index = device.partition(':')[2]
        if index.isdigit() and int(index) >= count:
            raise UserError(f"--device={device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}; "
                            f"pick one of those, or {fix}")
    elif device_type == 'mps' and not torch.backends.mps.is_available():
        raise UserError(f"--device={device}: MPS (Apple-silicon GPU) is not available on this machine; {fix}")


@dataclass
class Setup:
    device: str       # 'cpu', 'cuda:1', 'mps'
    device_type: str  # 'cpu', 'cuda', 'mps'
    dtype: str        # what 'auto' resolved to
    ctx: object       # the autocast context (a no-op for float32)
    muon_dtype: str   # the precision of Muon's iteration (muon_dtype)


def this_ranks_device(device):
    """Under torchrun a CUDA device means this process's own GPU, cuda:<LOCAL_RANK>, made the current device before
    anything asks CUDA a question: a query on the default device would open a context on GPU 0 in every process."""
    if device.startswith('cuda') and 'LOCAL_RANK' in os.environ and int(os.environ.get('RANK', -1)) != -1:
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    if device.startswith('cuda:') and torch.cuda.is_available():  # plain 'cuda' is the current device already
        torch.cuda.set_device(device)  # (and set_device refuses a device without an index)
    return device


def enable_tf32():
    """float32 matmuls and convolutions on tensor cores (TF32), through the API torch >= 2.9 keeps (the legacy
    allow_tf32 setters warn in every process, and mixing the two raises)."""
    torch.backends.cuda.matmul.fp32_precision = 'tf32'
    torch.backends.cudnn.conv.fp32_precision = 'tf32'


# glibc's malloc gives freed memory back to the kernel: a large block (from 128 KiB, a threshold it raises up to
# 32 MiB as blocks are freed) is mapped for itself and unmapped when freed, and its heap's top is trimmed past another
# threshold. The next tensor of that size then takes a page fault on every 4 KiB page it first writes, each page
# zeroed by the kernel. A training step frees and makes again the same tensors every time (activations, attention
# scores, the loss's chunks of logits, the gradients): GPT-2 124M's eager bf16 step on a CPU faulted in ~2 GB a step,
# a quarter of its time (BENCHMARKS.md). Told to keep what is freed, malloc reuses it, as the caching allocators
# torch's CPU tuning guides preload (jemalloc, tcmalloc) do. The cost: the process's memory stays at its peak until it
# exits, and the peak is higher: 0-8% in the training steps measured, more where tensor sizes vary from step to step
# (a freed block is reused only by a request that fits it), and FSDP on a CPU keeps much of what it would free
# (docs/fsdp.md). So an FSDP run, which is sharded for its memory, does the opposite: blocks of 4 MiB and up are
# mapped for themselves and given back when freed, and each process's peak is what its shards and one layer's
# gathered weights need at once. M_MMAP_THRESHOLD, M_TRIM_THRESHOLD: mallopt's parameters (malloc.h). Some glibc
# versions refuse an mmap threshold over 32 MiB (half their HEAP_MAX_SIZE): there, blocks of up to 32 MiB are kept.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
RETURNED_FROM = 4 * 2**20  # with keep=False, the size from which freed blocks go back to the kernel


def keep_freed_memory(keep=True):
    """Have glibc's malloc keep freed memory for the next allocations instead of returning it to the kernel, or
    with keep=False give back every freed block of RETURNED_FROM bytes and up; whether it did. Left alone: another C
    library (macOS, Windows; musl's mallopt does nothing), and an environment that sets any of glibc's malloc
    variables (MALLOC_ARENA_MAX=8, MALLOC_MMAP_THRESHOLD_=..., a glibc.malloc tunable in GLIBC_TUNABLES): whoever
    set one has chosen malloc's behaviour."""
    chosen = 'glibc.malloc.' in os.environ.get('GLIBC_TUNABLES', '') or any(n.startswith('MALLOC_') for n in os.environ)
    mallopt = getattr(ctypes.CDLL(None), 'mallopt', None) if sys.platform.startswith('linux') and not chosen else None
    if mallopt is None:
        return False
    if not keep:
        return bool(mallopt(M_MMAP_THRESHOLD, RETURNED_FROM))
    kept = mallopt(M_MMAP_THRESHOLD, 2**31 - 1) or mallopt(M_MMAP_THRESHOLD, 32 * 2**20)  # (where refused)
    return bool(kept and mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def setup(device='auto', dtype='auto', keep_freed=True):
    """Every script's device and precision set-up: resolve both (under torchrun on this rank's own GPU, set as the
    current device first), turn on TF32 matmuls on CUDA (float32 work then runs on tensor cores), keep freed memory
    for reuse on a CPU, or give it back (keep_freed=False: FSDP; keep_freed_memory), and build the autocast context."""
    device = resolve_device(device)
    device_type = 'cuda' if 'cuda' in device else device.split(':')[0]
    check_device(device, device_type)
    if device_type == 'cuda':
        device = this_ranks_device(device)
        enable_tf32()
    elif device_type == 'cpu':
        keep_freed_memory(keep_freed)
    dtype = resolve_dtype(dtype, device_type)
    return Setup(device, device_type, dtype, autocast_context(device_type, dtype), muon_dtype(dtype, device_type))


# -----------------------------------------------------------------------------
# the peak that MFU is measured against

# Dense tensor-core peaks (no 2:4 sparsity) at the half precision each GPU trains in: bf16 with fp32 accumulation
# (GeForce cards run that at half their fp16-accumulate rate), or fp16 on a GPU without bf16 (V100, T4: 'auto' is
# float16 there). From NVIDIA's datasheets and architecture whitepapers. Matched as whole words in
# torch.cuda.get_device_name ('NVIDIA H100 80GB HBM3', 'NVIDIA H100 NVL', 'Tesla V100-SXM2-16GB'), the more specific
# first. Not here, so measured (probe_peak_cuda): the A10G, for which NVIDIA publishes no tensor figure.
GPU_PEAK_FLOPS = {
    'B200': (2250e12, 'bf16'),
    'GH200': (989e12, 'bf16'), 'H200 NVL': (835e12, 'bf16'), 'H200': (989e12, 'bf16'),
    'H100 NVL': (835e12, 'bf16'), 'H100 PCIe': (756e12, 'bf16'), 'H100': (989e12, 'bf16'),  # H100 alone: SXM
    'H800 PCIe': (756e12, 'bf16'), 'H800': (989e12, 'bf16'),
    'A100': (312e12, 'bf16'), 'A800': (312e12, 'bf16'), 'A40': (149.7e12, 'bf16'), 'RTX A6000': (154.8e12, 'bf16'),
    'A10': (125e12, 'bf16'),
    'L40S': (362e12, 'bf16'), 'L40': (181e12, 'bf16'), 'L4': (121e12, 'bf16'), 'RTX 6000 Ada': (364.2e12, 'bf16'),
    'RTX 5090': (209.5e12, 'bf16'), 'RTX 4090': (165.2e12, 'bf16'), 'RTX 3090': (71e12, 'bf16'),
    'V100-PCIE': (112e12, 'fp16'), 'V100': (125e12, 'fp16'), 'T4': (65e12, 'fp16'),  # no bf16 tensor cores
}


def gpu_peak(name):
    """(dense FLOP/s, 'bf16' or 'fp16') of a GPU by its device name, or None for a GPU not in GPU_PEAK_FLOPS."""
    for key, peak in GPU_PEAK_FLOPS.items():
        if re.search(rf'\b{re.escape(key)}\b', name):
            return peak
    return None


def gpu_peak_flops(name):
    """The dense half-precision peak of a GPU by its device name, or None for a GPU not in GPU_PEAK_FLOPS."""
    peak = gpu_peak(name)
    return peak[0] if peak else None


class Peak:
    """
    The peak FLOP/s that MFU is measured against, where it came from (`source`, printed in the log), and how to
    measure it again. A measured peak is the best rate a few matmuls showed; on a busy machine they can all lose
    time to other processes, and every MFU of the run would then read high (7,068% was seen). So mfu() never
    reports above 100%: a step that ran faster than the peak re-measures it, and the peak becomes the best of the
    old figure, the new one and the step's own rate (which the hardware did reach), with a line saying so.
    """

    def __init__(self, flops, source, measure=None):
        self.flops, self.source, self.measure = flops, source, measure

    def mfu(self, achieved):
        """achieved (FLOP/s) over the peak, at most 1 where the peak was measured."""
        if achieved > self.flops and self.measure is not None:
            flops, source = self.measure()
            old = self.flops
            self.flops, self.source = max((old, self.source), (flops, source),
                                          (achieved, 'the rate a training step reached'), key=lambda p: p[0])
            print(f"MFU: a step ran at {achieved / 1e12:.3f} TFLOP/s, above the measured peak of {old / 1e12:.3f} "
                  f"(measured while the machine was busy); measured again: {flops / 1e12:.3f}; the peak is now "
                  f"{self.flops / 1e12:.3f} TFLOP/s ({self.source})", flush=True)
        return achieved / self.flops


def peak_flops(device_type, dtype, device=None, max_n=2048, max_reps=8):
    """
    The Peak that train.py's and bench.py's MFU figures are measured against. A GPU in GPU_PEAK_FLOPS: its
    published dense figure, stated. Another GPU: back-to-back large matmuls at the run's dtype timed with CUDA
    events (probe_peak_cuda). A CPU: matmuls on one thread measured here by probe_peak at the run's dtype, times the
    threads torch uses, or at float32 on a CPU that only emulates that dtype, the fastest the hardware does (an
    emulated peak would make every MFU look high); a measured peak is measured again whenever a step beats it
    (Peak.mfu).
    """
    if device_type == 'cuda':
        name = torch.cuda.get_device_name(device)
        stated = gpu_peak(name)
        if stated:
            return Peak(stated[0], f"{name}'s published dense {stated[1]} tensor-core figure, stated")

        def measure_cuda():
            flops, n, calls = probe_peak_cuda(device or 'cuda', dtype)
            return flops, f"measured: {calls} back-to-back {n}x{n} {dtype} matmuls on {name}, CUDA events"
        return Peak(*measure_cuda(), measure=measure_cuda)
    note = ''
    if device_type == 'cpu' and not cpu_dtype_is_native(dtype):
        dtype, note = 'float32', f'; this CPU only emulates {dtype}, so its float32 peak'

    def measure():
        # on one thread, times the threads torch uses: with several, every matmul waits for its slowest thread,
        # and on a busy machine one of them is always descheduled (2 threads measured 0.3-1.7 GFLOP/s there,
        # 1 thread 41-46: x2 is the peak, stable run to run)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            flops, n, calls = probe_peak(matmul_timer(device or device_type, dtype), max_n=max_n, max_reps=max_reps)
        finally:
            torch.set_num_threads(threads)
        return flops * threads, (f"measured: best of {calls} {n}x{n} {dtype} matmuls on {device or device_type}, "
                                 f"on one thread, times {threads} thread(s){note}")
    return Peak(*measure(), measure=measure)


def probe_peak_cuda(device, dtype, n=8192, calls=20):
    """(FLOP/s, n, calls): `calls` (n x n) @ (n x n) matmuls at dtype queued back to back and timed with CUDA events,
    after a warm-up: large enough that launches and clocks ramping up do not count (~30 ms on an H100)."""
    gen = torch.Generator(device).manual_seed(0)  # its own: the global RNG draws training's dropout masks
    a, b = (torch.randn(n, n, device=device, dtype=getattr(torch, dtype), generator=gen) for _ in range(2))
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        a @ b
    end.record()
    end.synchronize()
    return calls * 2 * n ** 3 / (start.elapsed_time(end) / 1e3), n, calls


def matmul_timer(device, dtype):
    """A function n -> seconds for one (n x n) @ (n x n) matmul at dtype on a CPU (or MPS)."""
    gen = torch.Generator(device).manual_seed(0)  # its own: the global RNG draws training's dropout masks
    operands = {}  # n -> (a, b), made once per size

    def time_matmul(n):
        if n not in operands:
            operands.clear()
            operands[n] = [torch.randn(n, n, device=device, dtype=getattr(torch, dtype), generator=gen)
                           for _ in range(2)]
        a, b = operands[n]
        t0 = time.perf_counter()
        a @ b
        return time.perf_counter() - t0
    return time_matmul


def probe_peak(time_matmul, start_n=128, max_n=2048, call_s=0.01, budget_s=0.25, max_reps=8):
    """
    The best matmul rate time_matmul(n) -> seconds shows, in a bounded amount of work: n doubles from start_n
    until one call takes call_s or n reaches max_n (large enough to run at full speed on a fast device, small
    where the kernel is slow), then the best of up to max_reps more calls at that size, as many as fit in
    budget_s. The figure is the best rate of any call, at any size (best, not mean: on a shared machine a call can
    only lose time to other jobs, and a small one is likelier to run whole between them). At most
    log2(max_n / start_n) + 2 + max_reps calls; under a second unless one start_n matmul alone takes longer.
    Returns (FLOP/s, the size that showed it, number of calls at the last size).
    """
    best_rate, best_n = 0.0, start_n

    def timed(n):  # seconds of one call; keeps the best rate any call showed, at any size
        nonlocal best_rate, best_n
        seconds = time_matmul(n)
        if 2 * n ** 3 / max(seconds, 1e-12) >= best_rate:
            best_rate, best_n = 2 * n ** 3 / max(seconds, 1e-12), n
        return seconds

    n = start_n
    time_matmul(n)  # warm-up: the first call also starts the thread pool and the allocator
    best = timed(n)
    while best < call_s and n < max_n:
        n *= 2
        best = timed(n)
    reps = max(1, min(max_reps, int(budget_s / max(best, 1e-9))))
    for _ in range(reps):
        best = min(best, timed(n))
    return best_rate, best_n, reps + 1


PR_SET_PDEATHSIG = 1  # prctl's request for a signal when the parent dies (linux/prctl.h)
LAUNCHER_DEATH_WAIT = 'GPT_TEST_LAUNCHER_DEATH_WAIT'  # tests: hold the race window open until the launcher dies
# not SIGTERM: the kernel sends it once for each thread of the launcher as they exit, and a second SIGTERM means
# "stop at once" (loop.GracefulStop, which takes this one as a stop request however often it comes)
LAUNCHER_DEATH_SIGNAL = signal.SIGUSR2


def stop_with_launcher():
    """A torchrun worker asks Linux for LAUNCHER_DEATH_SIGNAL when its launcher dies. A launcher killed with
    SIGKILL cannot stop its workers itself: orphaned, they would train on and hold out_dir's lock; with the signal
    they stop as at a SIGTERM (loop.GracefulStop: save, exit; before it is installed, the signal ends the process).
    Elsewhere (macOS, Windows) there is no such request."""
    if not sys.platform.startswith('linux'):
        return
    launcher = os.getppid()
    if os.environ.get(LAUNCHER_DEATH_WAIT):  # (up to that many seconds)
        print("waiting for the launcher to die before asking for its death signal", file=sys.stderr, flush=True)
        deadline = time.time() + float(os.environ[LAUNCHER_DEATH_WAIT])
        while os.getppid() == launcher and time.time() < deadline:
            time.sleep(0.05)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, LAUNCHER_DEATH_SIGNAL, 0, 0, 0) != 0:  # refused (a sandbox): train on without it
        print(f"warning: prctl(PR_SET_PDEATHSIG) failed ({os.strerror(ctypes.get_errno())}): this worker will not "
              f"stop by itself if its launcher is killed", file=sys.stderr, flush=True)
        return
    if os.getppid() != launcher:  # it died before the request: no signal will come, so send it now
        os.kill(os.getpid(), LAUNCHER_DEATH_SIGNAL)


def init_distributed(device, backend='auto'):
    """Under torchrun (RANK set): this process's (rank, local_rank, world_size, device) after joining the process
    group (backend 'auto': nccl on CUDA, gloo on CPU), each process on its own GPU. Otherwise (0, 0, 1, device).
    Reinstalls the one-line error hook, which init_process_group replaces with its own."""
    if int(os.environ.get('RANK', -1)) == -1:
        return 0, 0, 1, device
    rank, local_rank, world_size = (int(os.environ[k]) for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE'))
    stop_with_launcher()
    if device.startswith('cuda'):
        device = this_ranks_device(device)  # setup() has made it current already
    backend = backend if backend != 'auto' else ('nccl' if device.startswith('cuda') else 'gloo')
    restart = int(os.environ.get('TORCHELASTIC_RESTART_COUNT', 0))
    if restart and os.environ.get('TORCHELASTIC_USE_AGENT_STORE') == 'True':
        # after a torchrun restart the agent's store still holds the failed attempt's addresses under the same
        # keys, where the new processes would read them and connect to dead ones: each attempt gets its own keys
        store = torch.distributed.TCPStore(os.environ['MASTER_ADDR'], int(os.environ['MASTER_PORT']), is_master=False)
        torch.distributed.init_process_group(backend=backend, store=torch.distributed.PrefixStore(
            f'attempt_{restart}', store), rank=rank, world_size=world_size)
    else:
        torch.distributed.init_process_group(backend=backend)
    install_error_hook()
    return rank, local_rank, world_size, device
