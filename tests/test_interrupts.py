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
    run_script('train.py', '--dataset=shakespeare_char', *TINY, f'--out_dir={tmp_path}',
               '--gradient_accumulation_steps=1', '--max_iters=2', '--lr_decay_iters=2', '--eval_interval=2',
               '--eval_iters=1')
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


def trained(out_dir, *args):
    """40 steps of a tiny model into out_dir, evaluated every 20; ckpt.pt holds iter 40 (its val is the best)."""
    run_script('train.py', '--dataset=shakespeare_char', *TINY, f'--out_dir={out_dir}',
               '--gradient_accumulation_steps=1', '--max_iters=40', '--lr_decay_iters=40', '--eval_interval=20',
               '--eval_iters=2', '--learning_rate=1e-2',
               *args)
    assert torch.load(out_dir / 'ckpt.pt', weights_only=True)['iter_num'] == 40


# a resumed run that trains on and on with no eval or log step of its own: only a signal ends it
ENDLESS = ['--init_from=resume', '--gradient_accumulation_steps=1', '--eval_iters=2', '--max_iters=1000000',
           '--lr_decay_iters=1000000', '--eval_interval=1000000', '--log_interval=1000000',
           '--always_save_checkpoint=False']


def sigterm_after(proc, seconds):
    wait_for_line(proc, 'MFU is measured against')
    time.sleep(seconds)
    proc.send_signal(signal.SIGTERM)
    return proc.communicate(timeout=120)


def test_a_stop_after_divergence_saves_nothing_and_keeps_the_good_checkpoint(shakespeare_char, tmp_path):
    trained(tmp_path)
    before = (tmp_path / 'ckpt.pt').read_bytes()
    proc = start_train(f'--out_dir={tmp_path}', *ENDLESS, '--learning_rate=1e9')  # NaN within a few steps
    out, err = sigterm_after(proc, 3.0)
    lines = [line for line in err.splitlines() if line.startswith('error: ')]
    assert proc.returncode == 2 and len(lines) == 1 and 'Traceback' not in err, (out, err)
    assert 'the weights became non-finite' in lines[0] and f'{tmp_path}/ckpt.pt (iter 40) is kept' in lines[0]
    assert 'dtype' not in lines[0].split('then resume:')[0]  # a float32 run is not told to use float32
    assert 'then resume: python train.py' in lines[0] and lines[0].endswith('--init_from=resume')
    assert (tmp_path / 'ckpt.pt').read_bytes() == before and not (tmp_path / 'resume.pt').exists()
    ckpt = torch.load(tmp_path / 'ckpt.pt', weights_only=True)
    assert all(torch.isfinite(w).all() for w in ckpt['model'].values())


def test_a_stop_keeps_the_best_model_and_resumes_from_where_it_stopped(shakespeare_char, tmp_path):
    trained(tmp_path)
    before = (tmp_path / 'ckpt.pt').read_bytes()
    proc = start_train(f'--out_dir={tmp_path}', *ENDLESS, '--learning_rate=1e-3')
    out, err = sigterm_after(proc, 3.0)
    assert proc.returncode == 130, (out, err)
    assert (tmp_path / 'ckpt.pt').read_bytes() == before  # always_save_checkpoint=False: ckpt.pt is the best
    resume = torch.load(tmp_path / 'resume.pt', weights_only=True)
    assert resume['iter_num'] > 40 and resume['best_iter'] == 40
    command = out.split('resume with: ')[1].splitlines()[0]
    assert command.startswith('python train.py --dataset=shakespeare_char') and command.endswith('--init_from=resume')
    # sample.py (and export.py) read the best model; --init_from=resume continues from resume.pt
    run_script('train.py', '--dataset=shakespeare_char', *TINY, f'--out_dir={tmp_path}', '--init_from=resume',
               '--eval_only=True', '--eval_iters=1', '--gradient_accumulation_steps=1')
    import json
    with open(tmp_path / 'eval.jsonl') as f:
        assert json.loads(f.readline())['iter'] == resume['iter_num']
    n = resume['iter_num'] + 5
    proc = run_script('train.py', '--dataset=shakespeare_char', *TINY, f'--out_dir={tmp_path}', '--init_from=resume',
                      '--gradient_accumulation_steps=1', f'--max_iters={n}', f'--lr_decay_iters={n}', '--eval_iters=2',
                      f'--eval_interval={n}', '--always_save_checkpoint=True')
    assert f'done: 5 iters (to iter {n})' in proc.stdout  # this run's iterations, not all of them
    assert torch.load(tmp_path / 'ckpt.pt', weights_only=True)['iter_num'] == n
    assert not (tmp_path / 'resume.pt').exists()  # ckpt.pt is the newest state again


def test_a_resumed_run_keeps_log_jsonl_one_curve(shakespeare_char, tmp_path):
    trained(tmp_path, '--always_save_checkpoint=True')
    import json
    with open(tmp_path / 'log.jsonl') as f:
        assert [json.loads(line)['iter'] for line in f] == [0, 20, 40]
    run_script('train.py', '--dataset=shakespeare_char', *TINY, f'--out_dir={tmp_path}', '--init_from=resume',
               '--gradient_accumulation_steps=1', '--max_iters=60', '--lr_decay_iters=60', '--eval_interval=20',
               '--eval_iters=2')
    with open(tmp_path / 'log.jsonl') as f:
        assert [json.loads(line)['iter'] for line in f] == [0, 20, 40, 60]  # iter 40 once, not twice


def test_sampling_non_finite_weights_is_one_line(shakespeare_char, tmp_path):
    trained(tmp_path)
    ckpt = torch.load(tmp_path / 'ckpt.pt', weights_only=True)
    ckpt['model']['transformer.h.0.mlp.c_fc.weight'][0, 0] = float('nan')
    torch.save(ckpt, tmp_path / 'ckpt.pt')
    proc = run_script('sample.py', f'--out_dir={tmp_path}', '--num_samples=1', '--max_new_tokens=5', '--device=cpu',
                      check=False)
    assert_one_line_error(proc, 'are not finite', 'cannot be sampled')


def worker_pid(launcher_pid, rank):
    """The pid of the torchrun worker of this rank: the launcher's child whose environment says RANK=rank."""
    for pid in open(f'/proc/{launcher_pid}/task/{launcher_pid}/children').read().split():
        with open(f'/proc/{pid}/environ', 'rb') as f:
            if f'RANK={rank}'.encode() in f.read().split(b'\0'):
                return int(pid)
    raise AssertionError(f"no rank {rank} worker under pid {launcher_pid}")


def test_ddp_ranks_agree_on_a_stop_at_a_logging_step(shakespeare_char, tmp_path):
    # SIGTERM to rank 1 alone: under DDP the ranks compare stop requests only at logging steps (every 5th here,
    # not every step, which would make each step wait on an all-reduce), and then all of them stop together
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'train.py']
    proc = subprocess.Popen(torchrun + ['--dataset=shakespeare_char', f'--out_dir={tmp_path}', *TINY,
                                        '--log_interval=5', '--gradient_accumulation_steps=2', '--eval_iters=2',
                                        '--max_iters=1000000', '--lr_decay_iters=1000000', '--eval_interval=1000000'],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=script_env())
    wait_for_line(proc, 'iter 10:')
    os.kill(worker_pid(proc.pid, 1), signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    stopped_at = torch.load(tmp_path / 'ckpt.pt', weights_only=True)['iter_num']
    assert stopped_at >= 10 and stopped_at % 5 == 0, (stopped_at, out[-2000:], err[-2000:])
    assert f'saving checkpoint to {tmp_path}/ckpt.pt (interrupted at iter {stopped_at})' in out
    assert 'stopped by signal; resume with:' in out and 'train.py", line' not in err, err[-3000:]
    # the ranks left through the stop (exit code 130, which the launcher reports as a failure; the last one out may
    # instead meet the launcher's own SIGTERM as it exits, the save being done by then)
    assert 'exitcode  : 130' in err, err[-3000:]


def gone(pid):
    """True once pid has exited (reaped, or a zombie its new parent has not reaped yet)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'Z'
    except FileNotFoundError:
        return True


def wait_gone(pids, timeout):
    """The pids still running after up to timeout seconds; those are killed (no orphan outlives a failed test)."""
    deadline = time.time() + timeout
    while time.time() < deadline and not all(gone(p) for p in pids):
        time.sleep(0.2)
    running = [p for p in pids if not gone(p)]
    for p in running:
        os.kill(p, signal.SIGKILL)
    return running


TORCHRUN = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'train.py',
            '--dataset=shakespeare_char', *TINY, '--parallelism=fsdp', '--gradient_accumulation_steps=2',
            '--eval_iters=2']


def test_workers_stop_and_save_when_the_torchrun_launcher_is_killed(shakespeare_char, tmp_path):
    # kill -9 of torchrun cannot be forwarded by torchrun: its workers get SIGTERM from the kernel (PR_SET_PDEATHSIG)
    # and stop as at any SIGTERM, saving first, instead of training on as orphans that hold out_dir's lock
    proc = subprocess.Popen(TORCHRUN + [f'--out_dir={tmp_path}', '--max_iters=1000000', '--lr_decay_iters=1000000',
                                        '--eval_interval=1000000'],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=script_env())
    wait_for_line(proc, 'iter 3:')
    workers = [worker_pid(proc.pid, rank) for rank in (0, 1)]
    proc.kill()
    assert proc.wait() == -signal.SIGKILL
    assert not wait_gone(workers, 30), 'the workers trained on after their launcher was killed'
    out, err = proc.stdout.read(), proc.stderr.read()
    # (the kernel signals once per thread of the dying launcher: one stop request, not a second "stop at once")
    assert err.count('the torchrun launcher died: stopping after the current step') == 2, err[-3000:]
    assert 'stopped at once' not in err and 'Traceback' not in err, err[-3000:]
    stopped_at = torch.load(tmp_path / 'ckpt.pt', weights_only=True)['iter_num']
    assert f'saving checkpoint to {tmp_path}/ckpt.pt (interrupted at iter {stopped_at})' in out, out[-3000:]
    # the out_dir is free again, and the run resumes from where it stopped
    n = stopped_at + 2
    proc = subprocess.run(TORCHRUN + [f'--out_dir={tmp_path}', '--init_from=resume', f'--max_iters={n}',
                                      f'--lr_decay_iters={n}', f'--eval_interval={n}'],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=script_env(), check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert torch.load(tmp_path / 'ckpt.pt', weights_only=True)['iter_num'] == n


def test_workers_stop_when_the_launcher_died_before_they_asked_for_its_death_signal(shakespeare_char, tmp_path):
    # a hook holds each worker between reading its parent's pid and PR_SET_PDEATHSIG until the launcher is dead: no
    # signal can come then, and the worker must see its new parent and stop by itself
    proc = subprocess.Popen(TORCHRUN + [f'--out_dir={tmp_path}', '--max_iters=1000000'], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=script_env({'GPT_TEST_LAUNCHER_DEATH_WAIT': '60'}))
    said = ''  # both workers say so (their lines may interleave): then both are in the window
    while said.count("before asking for its death signal") < 2:
        line = proc.stderr.readline()
        assert line, said
        said += line
    workers = [worker_pid(proc.pid, rank) for rank in (0, 1)]
    proc.kill()
    proc.wait()
    assert not wait_gone(workers, 30), 'the workers went on without their launcher'
    assert not (tmp_path / 'ckpt.pt').exists()
