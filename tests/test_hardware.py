"""hardware.py: the precision rule for both kinds of CPU (with torch's capability report faked, so the
result does not depend on the machine running the suite), the warning for an emulated dtype, a peak
probe whose work is bounded whatever the kernel's speed, and freed memory kept for reuse on a CPU."""
import platform
import subprocess
import sys
import warnings
from contextlib import nullcontext

import pytest
import torch

import hardware
from configurator import UserError
from conftest import REPO, script_env_without_malloc_settings

@pytest.fixture(autouse=True)
def capability_report(monkeypatch):
    """Here the capability report (faked or real) decides, as on a user's machine, unless a test sets cpu_kind
    (autouse fixtures run first, so cpu_kind's setting stands)."""
    monkeypatch.delenv('GPT_CPU_BF16', raising=False)


ZEN4 = {'architecture': 'x86_64', 'avx2': True, 'avx512_f': True, 'avx512_bf16': True, 'amx_bf16': False}
SAPPHIRE_RAPIDS = {'architecture': 'x86_64', 'avx2': True, 'avx512_bf16': True, 'amx_bf16': True,
                   'amx_fp16': True, 'avx512_fp16': True}
ZEN3 = {'architecture': 'x86_64', 'avx2': True, 'fma3': True, 'avx512_f': False, 'avx512_bf16': False,
        'amx_bf16': False}


@pytest.mark.parametrize('caps, expected', [(ZEN4, 'bfloat16'), (SAPPHIRE_RAPIDS, 'bfloat16'), (ZEN3, 'float32'),
                                            ({}, 'float32')])
def test_auto_is_bf16_only_where_the_cpu_has_it(caps, expected, capsys):
    assert hardware.resolve_dtype('auto', 'cpu', capabilities=caps) == expected
    assert capsys.readouterr().err == ''  # 'auto' never warns


def test_arm_bf16_counts_only_where_it_measures_faster(monkeypatch):
    arm = {'architecture': 'aarch64', 'neon': True, 'bf16': True}
    monkeypatch.setattr(hardware, '_bf16_matmul_is_faster', lambda: True)
    assert hardware.resolve_dtype('auto', 'cpu', capabilities=arm) == 'bfloat16'
    monkeypatch.setattr(hardware, '_bf16_matmul_is_faster', lambda: False)
    assert hardware.resolve_dtype('auto', 'cpu', capabilities=arm) == 'float32'
    assert hardware.resolve_dtype('auto', 'cpu', capabilities={'architecture': 'aarch64', 'neon': True}) == 'float32'


def test_the_capability_report_is_read_from_torch(monkeypatch):
    monkeypatch.setattr(torch.cpu, 'get_capabilities', lambda: ZEN3)
    assert hardware.resolve_dtype('auto', 'cpu') == 'float32'
    monkeypatch.setattr(torch.cpu, 'get_capabilities', lambda: ZEN4)
    assert hardware.resolve_dtype('auto', 'cpu') == 'bfloat16'


def test_forced_emulated_dtype_warns_in_one_line_and_runs(capsys):
    assert hardware.resolve_dtype('bfloat16', 'cpu', capabilities=ZEN3) == 'bfloat16'  # the user's choice stands
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith('warning: dtype=bfloat16 is emulated on this CPU'), err
    assert '--dtype=float32' in err[0]
    assert hardware.resolve_dtype('float16', 'cpu', capabilities=ZEN4) == 'float16'  # no avx512_fp16 on Zen 4
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith('warning: dtype=float16 is emulated'), err


@pytest.mark.parametrize('dtype, caps', [('bfloat16', ZEN4), ('float16', SAPPHIRE_RAPIDS), ('float32', ZEN3)])
def test_forced_native_dtype_does_not_warn(dtype, caps, capsys):
    assert hardware.resolve_dtype(dtype, 'cpu', capabilities=caps) == dtype
    assert capsys.readouterr().err == ''


def test_unknown_dtype_is_a_user_error():
    with pytest.raises(UserError, match="dtype must be 'float32', 'bfloat16', 'float16' or 'auto'"):
        hardware.resolve_dtype('fp8', 'cpu')


def test_setup_on_cpu(cpu_kind):
    hw = hardware.setup('cpu', 'float32')
    assert (hw.device, hw.device_type, hw.dtype, hw.muon_dtype) == ('cpu', 'cpu', 'float32', 'float32')
    assert isinstance(hw.ctx, nullcontext)
    hw = hardware.setup('cpu', 'auto')
    assert hw.dtype == hw.muon_dtype == {'native': 'bfloat16', 'emulated': 'float32'}[cpu_kind]


@pytest.mark.parametrize('caps', [ZEN3, ZEN4, SAPPHIRE_RAPIDS], ids=['zen3', 'zen4', 'sapphire_rapids'])
def test_the_cpu_kind_variable_stands_in_for_the_report(caps, cpu_kind):
    native = cpu_kind == 'native'
    assert hardware.cpu_has_native_bf16(caps) is native
    assert hardware.resolve_dtype('auto', 'cpu', capabilities=caps) == ('bfloat16' if native else 'float32')


def test_a_wrong_cpu_kind_is_one_line(monkeypatch):
    monkeypatch.setenv('GPT_CPU_BF16', 'yes')
    with pytest.raises(UserError, match="GPT_CPU_BF16=yes: set it to 'native' or 'emulated'"):
        hardware.resolve_dtype('auto', 'cpu')


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16', 'float16'])
def test_muon_iterates_in_the_runs_precision(dtype, cpu_kind):
    """float32 everywhere in a float32 run; bf16 in a half-precision run, but float32 where bf16 is emulated."""
    expected = 'float32' if dtype == 'float32' or cpu_kind == 'emulated' else 'bfloat16'
    assert hardware.muon_dtype(dtype, 'cpu') == expected


def test_an_explicit_dtype_is_the_same_on_every_cpu_kind(monkeypatch):
    """Nothing a float32 or bf16 run computes asks the CPU: the dtype and Muon's precision are the same both ways
    (the warning for an emulated half precision aside)."""
    resolved = {}
    for kind in ('native', 'emulated'):
        monkeypatch.setenv('GPT_CPU_BF16', kind)
        resolved[kind] = [hardware.resolve_dtype(d, 'cpu') for d in ('float32', 'bfloat16')]
        resolved[kind].append(hardware.muon_dtype('float32', 'cpu'))
    assert resolved['native'] == resolved['emulated'] == ['float32', 'bfloat16', 'float32']


class FakeMatmul:
    """time_matmul for probe_peak: no matmul is run; every call of size n 'takes' seconds(n)."""

    def __init__(self, seconds):
        self.seconds, self.calls = seconds, []

    def __call__(self, n):
        self.calls.append(n)
        return self.seconds(n)


def test_probe_with_a_very_slow_kernel_stops_at_once():
    fake = FakeMatmul(lambda n: 30.0)  # 30 s per call: an emulated kernel at its worst
    flops, n, calls = hardware.probe_peak(fake)
    assert fake.calls == [128, 128, 128]  # warm-up, the first timing, one more at the same size
    assert n == 128 and calls == 2 and flops == pytest.approx(2 * 128 ** 3 / 30.0)


def test_probe_with_a_slow_kernel_does_a_bounded_amount_of_work():
    fake = FakeMatmul(lambda n: 2 * n ** 3 / 1e9)  # 1 GFLOP/s: 4 ms at 128, 34 ms at 256
    flops, n, calls = hardware.probe_peak(fake)
    assert n == 256 and len(fake.calls) <= 12
    assert sum(fake.seconds(m) for m in fake.calls) < 1.0  # what the real kernel would have taken
    assert flops == pytest.approx(1e9)


def test_probe_with_a_fast_kernel_grows_to_max_n_and_stops():
    fake = FakeMatmul(lambda n: 2 * n ** 3 / 1e15)  # 1 PFLOP/s: every size is quick
    flops, n, calls = hardware.probe_peak(fake, max_n=2048, max_reps=8)
    assert n == 2048 and max(fake.calls) == 2048
    assert len(fake.calls) == 1 + 5 + 8  # warm-up, 128 -> 2048, then max_reps more
    assert flops == pytest.approx(1e15)


def test_probe_keeps_the_best_call():
    times = iter([1.0, 0.05, 0.04, 0.02, 0.03] + [0.5] * 20)  # warm-up, then timings at 128
    fake = FakeMatmul(lambda n: next(times))
    flops, n, calls = hardware.probe_peak(fake, call_s=0.01, budget_s=0.1, max_reps=4)
    assert n == 128 and flops == pytest.approx(2 * 128 ** 3 / 0.02)


def test_cpu_peak_of_an_emulated_dtype_is_the_float32_peak(cpu_kind):
    peak = hardware.peak_flops('cpu', 'bfloat16', max_n=256, max_reps=1)
    assert peak.flops > 0
    if cpu_kind == 'native':
        assert 'bfloat16 matmuls' in peak.source and 'emulates' not in peak.source
    else:
        assert 'float32 matmuls' in peak.source and 'only emulates bfloat16' in peak.source


def test_a_peak_measured_on_a_busy_machine_is_measured_again_and_mfu_stays_below_one(capsys):
    """A probe that ran while other processes held the CPU measured 1/70 of the peak (MFU read 7,068%): a step faster
    than the peak re-measures it; the peak becomes the best of the two and of the step's own rate, with a line."""
    measurements = iter([(2e9, 'measured, busy'), (50e9, 'measured, quiet'), (3e9, 'measured, busy again')])
    peak = hardware.Peak(*next(measurements), measure=lambda: next(measurements))
    assert peak.mfu(1e9) == 0.5 and capsys.readouterr().out == ''  # below the peak: nothing measured
    assert peak.mfu(20e9) == pytest.approx(0.4)  # 20 of the re-measured 50
    assert (peak.flops, peak.source) == (50e9, 'measured, quiet')
    assert 'MFU: a step ran at 0.020 TFLOP/s, above the measured peak of 0.002' in capsys.readouterr().out
    assert peak.mfu(80e9) == 1.0  # the re-measured peak (3) is lower still: the step's own rate is the peak
    assert peak.flops == 80e9 and peak.source == 'the rate a training step reached'
    stated = hardware.Peak(989e12, 'a datasheet')  # a stated peak is not measured again
    assert stated.mfu(500e12) == pytest.approx(500 / 989)


def test_gpu_peaks_match_whole_names():
    assert hardware.gpu_peak_flops('NVIDIA H100 80GB HBM3') == 989e12  # SXM
    assert hardware.gpu_peak_flops('NVIDIA H100 PCIe') == 756e12
    assert hardware.gpu_peak_flops('NVIDIA H100 NVL') == 835e12 and hardware.gpu_peak_flops('NVIDIA H200 NVL') == 835e12
    assert hardware.gpu_peak_flops('NVIDIA H200') == 989e12 and hardware.gpu_peak_flops('NVIDIA GH200 480GB') == 989e12
    assert hardware.gpu_peak_flops('NVIDIA B200') == 2250e12 and hardware.gpu_peak_flops('NVIDIA H800') == 989e12
    assert hardware.gpu_peak_flops('NVIDIA L40S') == 362e12 and hardware.gpu_peak_flops('NVIDIA L4') == 121e12
    assert hardware.gpu_peak_flops('NVIDIA L40') == 181e12 and hardware.gpu_peak_flops('NVIDIA A40') == 149.7e12
    assert hardware.gpu_peak_flops('NVIDIA A100-SXM4-80GB') == 312e12
    assert hardware.gpu_peak_flops('NVIDIA A800 80GB PCIe') == 312e12
    assert hardware.gpu_peak_flops('NVIDIA RTX A6000') == 154.8e12
    assert hardware.gpu_peak_flops('NVIDIA RTX 6000 Ada Generation') == 364.2e12
    assert hardware.gpu_peak_flops('NVIDIA GeForce RTX 5090') == 209.5e12
    assert hardware.gpu_peak('Tesla V100-SXM2-16GB') == (125e12, 'fp16')  # no bf16: 'auto' is float16 there
    assert hardware.gpu_peak('Tesla V100-PCIE-32GB') == (112e12, 'fp16') and hardware.gpu_peak('Tesla T4')[1] == 'fp16'
    assert hardware.gpu_peak_flops('NVIDIA A10') == 125e12
    assert hardware.gpu_peak_flops('NVIDIA A10G') is None  # no published tensor figure: measured
    assert hardware.gpu_peak_flops('Some Future GPU') is None


class FakeCuda:
    """torch.cuda as a 2-GPU machine seen from torchrun's rank 1, recording the order of what is asked."""

    def __init__(self, monkeypatch):
        self.calls, self.current = [], 0
        for name, fn in {'is_available': lambda: True, 'device_count': lambda: 2, 'set_device': self.set_device,
                         'is_bf16_supported': self.is_bf16_supported}.items():
            monkeypatch.setattr(torch.cuda, name, fn)
        monkeypatch.setenv('RANK', '1')
        monkeypatch.setenv('LOCAL_RANK', '1')
        monkeypatch.setenv('WORLD_SIZE', '2')

    def set_device(self, device):
        if torch.device(device).index is None:  # as torch's: "Expected a torch.device with a specified index"
            raise ValueError(f"Expected a torch.device with a specified index or an integer, but got:{device}")
        self.current = torch.device(device).index
        self.calls.append(('set_device', self.current))

    def is_bf16_supported(self, including_emulation=True):
        self.calls.append(('is_bf16_supported on', self.current, including_emulation))
        return True


def test_each_rank_sets_its_gpu_before_asking_cuda_anything(monkeypatch):
    """Under torchrun, rank 1's set-up makes cuda:1 current before the bf16 question (which would otherwise open a
    context on GPU 0 in every process), and asks for bf16 tensor cores, not emulation."""
    fake = FakeCuda(monkeypatch)
    hw = hardware.setup('cuda', 'auto')
    assert hw.device == 'cuda:1' and hw.dtype == 'bfloat16'
    assert fake.calls[0] == ('set_device', 1)
    assert all(call[1] == 1 for call in fake.calls)
    assert ('is_bf16_supported on', 1, False) in fake.calls


def test_one_process_on_the_default_gpu_sets_nothing(monkeypatch):
    fake = FakeCuda(monkeypatch)
    for variable in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE'):
        monkeypatch.delenv(variable)
    assert hardware.setup('cuda', 'auto').device == 'cuda' and ('set_device', 0) not in fake.calls
    assert hardware.setup('auto', 'auto').device == 'cuda'
    fake.calls.clear()
    assert hardware.setup('cuda:1', 'auto').device == 'cuda:1'
    assert fake.calls[0] == ('set_device', 1) and all(call[1] == 1 for call in fake.calls)


def test_tf32_is_set_through_the_current_api():
    """TF32 through fp32_precision: the legacy allow_tf32 setters warn, and mixing the two APIs raises."""
    old = torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            hardware.enable_tf32()
        assert torch.backends.cuda.matmul.fp32_precision == torch.backends.cudnn.conv.fp32_precision == 'tf32'
    finally:
        torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = old
    source = open(hardware.__file__).read()
    assert 'allow_tf32 =' not in source and 'allow_tf32=' not in source


# A CPU run's set-up has glibc keep freed memory: a tensor made again after a free of the same size takes no page
# faults, where glibc's own behaviour (any malloc variable in the environment leaves it in charge) maps a 64 MiB
# tensor, over the largest mmap threshold it picks by itself, afresh each time and faults its pages in again (16,384
# of them; fewer where the kernel backs it with huge pages). Each case in its own process, since mallopt's settings
# last for the process, and with no malloc variable of the runner's environment. After the count, the script asks
# glibc for the setting again: some versions refuse a threshold over 32 MiB, and there 64 MiB tensors stay mapped.
FAULTS_OF_A_TENSOR_MADE_AGAIN = """
import ctypes, resource, torch
import hardware
hardware.setup('cpu', 'float32')
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(40):  # the first allocations settle the heap; the last 10 are counted
    if i == 30:
        start = faults()
    x = torch.ones(16 * 2**20)  # 64 MiB, every page written
    del x
print(faults() - start, ctypes.CDLL(None).mallopt(hardware.M_MMAP_THRESHOLD, 2**31 - 1))
"""


@pytest.mark.skipif(not sys.platform.startswith('linux') or platform.libc_ver()[0] != 'glibc',
                    reason="mallopt's settings are glibc's")
def test_a_cpu_run_reuses_freed_memory_instead_of_faulting_it_in_again():
    def faults(**malloc):
        proc = subprocess.run([sys.executable, '-c', FAULTS_OF_A_TENSOR_MADE_AGAIN], cwd=REPO, capture_output=True,
                              text=True, timeout=120, env=script_env_without_malloc_settings(malloc))
        assert proc.returncode == 0, proc.stderr[-2000:]
        count, accepted = proc.stdout.split()
        if accepted != '1':
            pytest.skip("this glibc refuses an mmap threshold over 32 MiB: a 64 MiB tensor is mapped afresh anyway")
        return int(count)
    kept, glibcs = faults(), faults(MALLOC_ARENA_MAX='8')
    assert glibcs >= 10 and kept * 10 < glibcs, (kept, glibcs)
