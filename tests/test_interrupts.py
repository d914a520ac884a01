"""How a run ends when it is interrupted or cannot write, tried with real signals and processes as a user hits
them: Ctrl-C during a long evaluation, a second Ctrl-C, an unwritable out_dir, two runs on one out_dir, and two
writers saving checkpoints side by side while a reader loads them."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import torch

from conftest import REPO, assert_one_line_error, run_script, script_env

TINY = ['--device=cpu', '--dtype=float32', '--compile=False', '--n_layer=2', '--n_head=2', '--n_embd=32',
        '--block_size=32', '--batch_size=4', '--log_interval=1', '--warmup_iters=1']


def start_train(*args):
    return subprocess.Popen([sys.executable, 'train.py', '--dataset=shakespeare_char', *TINY, *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=script_env())


def wait_for_line(proc, fragment, timeout=120):
    """Read proc's stdout until a line holds fragment; returns the lines read."""
    lines, deadline = [], time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if fragment in line:
            return lines
    proc.kill()
    raise AssertionError(f"no line with {fragment!r} within {timeout} s:\n{''.join(lines)}{proc.stderr.read()}")


def test_ctrl_c_during_a_long_eval_only_stops_within_seconds(shakespeare_char, tmp_path):
    # 200,000 eval batches take many minutes; the first Ctrl-C must cut them short
    proc = start_train(f'--out_dir={tmp_path}', '--eval_only=True', '--eval_iters=200000',
                       '--gradient_accumulation_steps=1')
    wait_for_line(proc, 'MFU is measured against')
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    sent = time.time()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert time.time() - sent < 10, 'the evaluation was not cut short'
    assert 'Traceback' not in err and 'SIGINT: stopping' in err and 'stopped by signal' in out
    assert 'step 0' not in out and not (tmp_path / 'ckpt.pt').exists()


def test_a_second_ctrl_c_stops_at_once(shakespeare_char, tmp_path):
    # one optimizer step of 20,000 micro-batches lasts far longer than the test waits: the first Ctrl-C
    # asks for a stop after it, the second must stop now
    proc = start_train(f'--out_dir={tmp_path}', '--gradient_accumulation_steps=20000', '--eval_iters=1',
                       '--max_iters=5', '--lr_decay_iters=5')
    wait_for_line(proc, 'step 0: train loss')
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    time.sleep(2.0)
    assert proc.poll() is None  # still finishing its step, as asked
    proc.send_signal(signal.SIGINT)
    sent = time.time()
    out, err = proc.communicate(timeout=60)
    assert time.time() - sent < 5 and proc.returncode == 130, (out, err)
    assert 'stopped at once by a second SIGINT' in err and 'Traceback' not in err
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.tmp')] and not (tmp_path / 'ckpt.pt').exists()


def test_an_unwritable_out_dir_fails_before_any_work(shakespeare_char, tmp_path):
    # /sys/kernel refuses new files even to root: an unwritable folder whoever runs the suite
    proc = run_script('train.py', '--dataset=shakespeare_char', *TINY, '--out_dir=/sys/kernel/gpt-out',
                      '--gradient_accumulation_steps=1', check=False)
    assert_one_line_error(proc, 'cannot write checkpoints into out_dir /sys/kernel/gpt-out', '--out_dir')
    assert 'step 0' not in proc.stdout and 'Initializing' not in proc.stdout
    (tmp_path / 'ckpt.pt').mkdir()
    proc = run_script('train.py', '--dataset=shakespeare_char', *TINY, f'--out_dir={tmp_path}',
                      '--gradient_accumulation_steps=1', check=False)
    assert_one_line_error(proc, 'ckpt.pt is a directory')
    assert 'step 0' not in proc.stdout


def test_a_second_run_on_the_same_out_dir_is_refused(shakespeare_char, tmp_path):
    first = start_train(f'--out_dir={tmp_path}', '--gradient_accumulation_steps=20000', '--eval_iters=1',
                        '--max_iters=5', '--lr_decay_iters=5')
    try:
        wait_for_line(first, 'step 0: train loss')
        proc = run_script('train.py', '--dataset=shakespeare_char', *TINY, f'--out_dir={tmp_path}',
                          '--gradient_accumulation_steps=1', check=False)
        line = assert_one_line_error(proc, f'out_dir {tmp_path} is in use by pid {first.pid}', 'another --out_dir')
        assert 'step 0' not in proc.stdout, line
        assert first.poll() is None  # the first run goes on untouched
    finally:
        first.kill()
        first.communicate()
    # once it is gone (even killed), the out_dir is free again
    run_script('train.py', '--dataset=shakespeare_char', *TINY, f'--out_dir={tmp_path}', '--gradient_accumulation_steps=1',
               '--max_iters=2', '--lr_decay_iters=2', '--eval_interval=2', '--eval_iters=1')
    assert (tmp_path / 'ckpt.pt').exists()


WRITER = textwrap.dedent('''
    import sys, torch
    from checkpoint import save_checkpoint
    me = int(sys.argv[1])
    for i in range(15):
        save_checkpoint({'writer': me, 'round': i, 'a': torch.full((200_000,), float(me)),
                         'b': torch.full((200_000,), float(me))}, sys.argv[2])
''')


def test_concurrent_writers_never_mix_a_checkpoint(tmp_path):
    path = tmp_path / 'ckpt.pt'
    writers = [subprocess.Popen([sys.executable, '-c', WRITER, str(w), str(path)], cwd=REPO, env=script_env(),
                                stderr=subprocess.PIPE, text=True) for w in (1, 2)]
    seen = set()
    while any(w.poll() is None for w in writers):
        if path.exists():
            ckpt = torch.load(path, weights_only=True)  # a whole file: renamed into place, never written there
            me = ckpt['writer']
            assert torch.equal(ckpt['a'], torch.full((200_000,), float(me))) and torch.equal(ckpt['b'], ckpt['a'])
            seen.add(me)
    for w in writers:
        assert w.wait() == 0, w.stderr.read()  # neither writer lost its temporary file to the other
    assert seen and not [f for f in os.listdir(tmp_path) if f != 'ckpt.pt']
