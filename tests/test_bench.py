"""bench.py, run as a user runs it: the figures it prints, its errors, and the quickstart output parser."""
import json
import re

import bench
import training
from conftest import assert_one_line_error, run_script

TINY = ['--device=cpu', '--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=32', '--batch_size=4',
        '--warmup_steps=1', '--num_steps=3', '--peak_matmul_size=256', '--peak_repeats=1']
# one thread: on a shared, busy CPU two torch threads can wait ~1 s per op for each other; no test here times anything
ONE_THREAD = {'OMP_NUM_THREADS': '1'}


def figure(pattern, text):
    """The number the regex's group 1 matches in text (commas allowed), which must appear."""
    m = re.search(pattern, text)
    assert m, f"no match for {pattern!r} in:\n{text}"
    return float(m[1].replace(',', ''))


def test_bench_prints_training_and_generation_figures():
    out = run_script('bench.py', *TINY, '--gen_tokens=8', env=ONE_THREAD).stdout
    ms = figure(r'train: ([\d.]+) ms/iter', out)
    tokens_per_s = figure(r'train: ([\d,]+) tokens/s \(128 tokens/iter\)', out)  # 4 x 32 tokens
    mfu = figure(r'train: MFU ([\d.]+)%', out)
    peak = figure(r'peak: ([\d.]+) TFLOP/s \(measured: .*256x256 bfloat16', out)  # 'auto' is bf16 on CPU
    assert ms > 0 and peak > 0 and 0 < mfu < 100
    assert abs(tokens_per_s - 128 / ms * 1e3) <= 0.02 * tokens_per_s  # both from the same median step time
    cached = figure(r'generate \(cached\): 1 x 8 tokens from a 1-token prompt in [\d.]+ s, ([\d,.]+) tokens/s', out)
    uncached = figure(r'generate \(uncached\): 1 x 8 tokens from a 1-token prompt in [\d.]+ s, ([\d,.]+) tokens/s', out)
    assert cached > 0 and uncached > 0
    assert figure(r'the KV cache is ([\d.]+)x faster', out) > 0


def test_bench_real_data_with_accumulation(shakespeare_char):
    out = run_script('bench.py', *TINY, '--mode=train', '--real_data=True', '--dtype=float32',
                     '--gradient_accumulation_steps=2', env=ONE_THREAD).stdout
    assert 'real data' in out and 'generate' not in out
    figure(r'train: ([\d,]+) tokens/s \(256 tokens/iter\)', out)  # 2 micro-steps of 4 x 32
    figure(r'peak: ([\d.]+) TFLOP/s \(measured: .*256x256 float32', out)


def test_bench_user_errors_are_one_line():
    assert_one_line_error(run_script('bench.py', '--n_layers=2', check=False), "unknown config key 'n_layers'")
    assert_one_line_error(run_script('bench.py', '--mode=fast', check=False), 'mode must be')
    assert_one_line_error(run_script('bench.py', *TINY, '--mode=generate', '--gen_tokens=40', check=False),
                          'must fit block_size')


def test_parse_run_finds_the_first_eval_at_or_below_the_target(shakespeare_char, tmp_path, monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '1')  # run_timed passes the environment on
    out_dir = tmp_path / 'out'
    lines, wall = bench.run_timed([
        'train.py', '--dataset=shakespeare_char', f'--out_dir={out_dir}', '--device=cpu', '--dtype=float32',
        '--compile=False', '--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=32', '--batch_size=8',
        '--gradient_accumulation_steps=1', '--eval_iters=4', '--eval_interval=10', '--max_iters=30',
        '--lr_decay_iters=30', '--warmup_iters=2', '--learning_rate=1e-2', '--min_lr=1e-3', '--log_interval=1'])
    with open(out_dir / 'log.jsonl') as f:
        log = [json.loads(line) for line in f]
    assert [r['iter'] for r in log] == [0, 10, 20, 30]
    target = log[2]['val_loss']
    assert log[0]['val_loss'] > target and log[1]['val_loss'] > target  # the loss fell, so iter 20 is the first

    evals, crossing, done = bench.parse_run(lines, log, target)
    assert [e['iter'] for e in evals] == [0, 10, 20, 30]
    assert crossing['iter'] == 20 and crossing['val_loss'] == target  # full precision, from the log
    walls = [e['wall_s'] for e in evals]
    assert 0 < walls[0] < walls[1] < walls[2] < walls[3] <= wall
    assert done['ms_per_iter'] == round(log[-1]['ms_per_iter'], 2)  # train.py's median, printed and logged
    assert done['tokens_per_s'] == round(log[-1]['tokens_per_s'])

    _, crossing, _ = bench.parse_run(lines, log, min(r['val_loss'] for r in log) - 1e-6)
    assert crossing is None


def test_gpu_peaks_match_whole_names():
    assert training.gpu_peak_flops('NVIDIA H100 80GB HBM3') == 989e12
    assert training.gpu_peak_flops('NVIDIA H100 PCIe') == 756e12
    assert training.gpu_peak_flops('NVIDIA L40S') == 362e12 and training.gpu_peak_flops('NVIDIA L4') == 121e12
    assert training.gpu_peak_flops('NVIDIA A100-SXM4-80GB') == 312e12
    assert training.gpu_peak_flops('Some Future GPU') is None  # bench.py then measures a matmul peak
