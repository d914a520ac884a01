"""bench.py, run as a user runs it: the figures it prints, its errors, and the quickstart output parser."""
import json
import re
import subprocess
import sys

import bench
from conftest import REPO, assert_one_line_error, run_script, script_env

TINY = ['--device=cpu', '--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=32', '--batch_size=4',
        '--warmup_steps=1', '--num_steps=3', '--peak_matmul_size=256', '--peak_repeats=1']
# one thread: on a shared, busy CPU two torch threads can wait ~1 s per op for each other; no test here times anything
ONE_THREAD = {'OMP_NUM_THREADS': '1'}


def figure(pattern, text):
    """The number the regex's group 1 matches in text (commas allowed), which must appear."""
    m = re.search(pattern, text)
    assert m, f"no match for {pattern!r} in:\n{text}"
    return float(m[1].replace(',', ''))


# training FLOPs per iteration of TINY, counted by hand: PaLM's 6N + 12 * L * C * T per token (model.flops_per_token),
# with N the parameters less the position embeddings; vocab 65 (bench.py's default), no biases
TINY_N = (65 * 32                    # wte, tied with lm_head: counted once
          + 2 * (32                  # ln_1 weight
                 + 32 * 3 * 32       # attn.c_attn
                 + 32 * 32           # attn.c_proj
                 + 32                # ln_2 weight
                 + 32 * 4 * 32       # mlp.c_fc
                 + 4 * 32 * 32)      # mlp.c_proj
          + 32)                      # ln_f weight
TINY_FLOPS_PER_ITER = (6 * TINY_N + 12 * 2 * 32 * 32) * 4 * 32  # 4 sequences of 32 tokens


def assert_rounds_from(printed, decimals, lo, hi, what):
    """The figure, printed to `decimals` places, is the rounding of a value in [lo, hi]."""
    half = 0.5 * 10 ** -decimals + 1e-9
    assert lo - half <= printed <= hi + half, f"{what}: printed {printed}, expected {lo:.4f}..{hi:.4f}"


def test_bench_prints_training_and_generation_figures(cpu_kind):
    out = run_script('bench.py', *TINY, '--gen_tokens=8', env=ONE_THREAD).stdout
    ms = figure(r'train: ([\d.]+) ms/iter', out)
    tokens_per_s = figure(r'train: ([\d,]+) tokens/s \(128 tokens/iter\)', out)  # 4 x 32 tokens
    mfu = figure(r'train: MFU ([\d.]+)%', out)
    achieved = figure(r'train: MFU [\d.]+% \(([\d.]+) of [\d.]+ GFLOP/s\)', out)
    peak_gflops = figure(r'train: MFU [\d.]+% \([\d.]+ of ([\d.]+) GFLOP/s\)', out)
    dtype = re.search(r'^cpu, (\w+), compile=False', out, re.M)[1]  # what 'auto' resolved to on this kind of CPU
    assert dtype == {'native': 'bfloat16', 'emulated': 'float32'}[cpu_kind]
    # the peak is measured at that dtype, at most 256x256 (--peak_matmul_size), best of <= 2 (--peak_repeats=1)
    peak = figure(rf'peak: ([\d.]+) TFLOP/s \(measured: best of [12] (128x128|256x256) {dtype} matmuls', out)
    assert ms > 0 and peak > 0 and peak_gflops > 0
    # the rates follow from the hand counts and the printed step time and peak: the true step time is within
    # the rounding of the printed ms (2 decimals), the true peak within that of the GFLOP/s figure (1 decimal;
    # the TFLOP/s one, 3 decimals, is too coarse for a CPU's few dozen GFLOP/s)
    s_lo, s_hi = (ms - 0.005) / 1e3, (ms + 0.005) / 1e3
    p_lo, p_hi = (peak_gflops - 0.05) * 1e9, (peak_gflops + 0.05) * 1e9
    assert_rounds_from(tokens_per_s, 0, 128 / s_hi, 128 / s_lo, 'tokens/s')
    flops = TINY_FLOPS_PER_ITER
    assert_rounds_from(achieved, 1, flops / s_hi / 1e9, flops / s_lo / 1e9, 'achieved GFLOP/s')
    assert_rounds_from(mfu, 2, flops / s_hi / p_hi * 100, flops / s_lo / p_lo * 100, 'MFU %')
    cached = figure(r'generate \(cached\): 1 x 8 tokens from a 1-token prompt in [\d.]+ s, ([\d,.]+) tokens/s', out)
    uncached = figure(r'generate \(uncached\): 1 x 8 tokens from a 1-token prompt in [\d.]+ s, ([\d,.]+) tokens/s', out)
    assert cached > 0 and uncached > 0
    assert figure(r'the KV cache is ([\d.]+)x faster', out) > 0


def test_bench_real_data_with_accumulation(shakespeare_char):
    out = run_script('bench.py', *TINY, '--mode=train', '--real_data=True', '--dtype=float32',
                     '--gradient_accumulation_steps=2', env=ONE_THREAD).stdout
    assert 'real data' in out and 'generate' not in out
    figure(r'train: ([\d,]+) tokens/s \(256 tokens/iter\)', out)  # 2 micro-steps of 4 x 32
    figure(r'peak: ([\d.]+) TFLOP/s \(measured: best of [12] (128x128|256x256) float32 matmuls', out)


def test_bench_times_a_rotary_model_past_its_context():
    out = run_script('bench.py', *TINY, '--mode=generate', '--rotary=True', '--gen_tokens=40').stdout
    cached = figure(r'generate \(cached\): 1 x 40 tokens from a 1-token prompt in [\d.]+ s, ([\d,.]+) tokens/s', out)
    window = figure(r'generate \(recomputing the window\): 1 x 40 tokens .* ([\d,.]+) tokens/s', out)
    assert cached > 0 and window > 0
    assert figure(r'the KV cache is ([\d.]+)x faster than recomputing the window', out) > 0


def test_bench_user_errors_are_one_line():
    assert_one_line_error(run_script('bench.py', '--n_layers=2', check=False), "unknown config key 'n_layers'")
    assert_one_line_error(run_script('bench.py', '--mode=fast', check=False), 'mode must be')
    assert_one_line_error(run_script('bench.py', *TINY, '--mode=generate', '--gen_tokens=40', check=False),
                          'must fit block_size')


def test_parse_run_finds_the_first_eval_at_or_below_the_target(shakespeare_char, tmp_path, monkeypatch):
    monkeypatch.setenv('OMP_NUM_THREADS', '1')  # run_timed passes the environment on
    out_dir = tmp_path / 'out'
    lines, wall, started = bench.run_timed([
        'train.py', '--dataset=shakespeare_char', f'--out_dir={out_dir}', '--device=cpu', '--dtype=float32',
        '--compile=False', '--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=32', '--batch_size=8',
        '--gradient_accumulation_steps=1', '--eval_iters=4', '--eval_interval=10', '--max_iters=30',
        '--lr_decay_iters=30', '--warmup_iters=2', '--learning_rate=1e-2', '--min_lr=1e-3', '--log_interval=1'])
    with open(out_dir / 'log.jsonl') as f:
        log = [json.loads(line) for line in f]
    assert [r['iter'] for r in log] == [0, 10, 20, 30]
    target = log[2]['val_loss']
    assert log[0]['val_loss'] > target and log[1]['val_loss'] > target  # the loss fell, so iter 20 is the first

    run = bench.parse_run(lines, target, log, started)
    evals, crossing = run['evals'], run['crossing']
    assert [e['iter'] for e in evals] == [0, 10, 20, 30]
    assert crossing['iter'] == 20 and crossing['val_loss'] == target  # full precision, from the log
    # each eval's wall time after the process started, from the log's clock, lands where its line was printed
    printed_at = [t for t, line in lines if line.startswith('step ')]
    walls = [e['wall_s'] for e in evals]
    assert all(abs(w - t) < 0.5 for w, t in zip(walls, printed_at)), (walls, printed_at)
    assert 0 < walls[0] < run['first_step_s'] < walls[1] < walls[2] < walls[3] <= wall
    # the log's median step time agrees with the median of the printed iteration times from iter 5 on
    printed = sorted(float(line.split('time ')[1].split('ms')[0]) for _, line in lines
                     if line.startswith('iter ') and int(line.split()[1][:-1]) >= 5)
    assert abs(run['ms_per_iter'] - printed[len(printed) // 2]) <= 0.005 + 1e-9  # printed to 2 decimals

    assert bench.parse_run(lines, min(r['val_loss'] for r in log) - 1e-6, log, started)['crossing'] is None
    from_output = bench.parse_run(lines, target)  # nanoGPT writes no log.jsonl: the printed 4 decimals count
    assert [round(e['val_loss'], 4) for e in from_output['evals']] == [round(r['val_loss'], 4) for r in log]


def test_parse_run_reads_nanogpts_output():
    lines = [(1.5, 'step 0: train loss 4.1676, val loss 4.1649'),
             (2.0, 'iter 0: loss 4.1900, time 900.10ms, mfu -100.00%'),
             *[(2.0 + 0.04 * i, f'iter {i}: loss 3.0000, time {40 + i % 3}.00ms, mfu 0.03%') for i in range(1, 12)],
             (3.0, 'step 250: train loss 2.4293, val loss 1.8800')]
    run = bench.parse_run(lines, 1.8857)
    assert run['first_step_s'] == 2.0 and run['crossing'] == {'iter': 250, 'val_loss': 1.88, 'wall_s': 3.0}
    assert run['ms_per_iter'] == 41.0  # iters 5..11 took 42, 40, 41, 42, 40, 41, 42 ms


def test_activation_checkpointing_lowers_peak_memory():
    # 8 blocks of (32 x 256 x 128) activations: hundreds of MiB kept for the backward, against one block's worth
    args = ['bench.py', '--mode=train', '--device=cpu', '--dtype=float32', '--n_layer=8', '--n_head=4',
            '--n_embd=128', '--block_size=256', '--batch_size=32', '--warmup_steps=0', '--num_steps=1',
            '--peak_matmul_size=256', '--peak_repeats=1']
    plain = run_script(*args, env=ONE_THREAD).stdout
    checkpointed = run_script(*args, '--activation_checkpointing=True', env=ONE_THREAD).stdout
    memory = lambda out: figure(r"train: peak memory ([\d,]+) MiB \(the process's peak RSS", out)
    assert 'activation_checkpointing=True' in checkpointed
    assert memory(checkpointed) < memory(plain), (memory(checkpointed), memory(plain))


def test_bench_under_torchrun_reports_every_process_peak_memory():
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'bench.py', *TINY,
           '--mode=train', '--dtype=float32', '--parallelism=fsdp']
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=script_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    peaks = re.search(r'train: peak memory per process, fsdp over 2: ([\d,]+), ([\d,]+) MiB', proc.stdout)
    assert peaks and all(int(p.replace(',', '')) > 100 for p in peaks.groups()), proc.stdout  # torch alone is more
    assert proc.stdout.count('train: peak memory per process') == 1  # one process prints
