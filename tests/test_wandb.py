"""--wandb_log=True as a user without an account or network runs it: WANDB_MODE=offline writes a local run
directory (what `wandb sync` uploads later). Its config is the run's, its history is log.jsonl record for
record, a resumed train.py continues the same wandb run, and a missing wandb is one error line before any work."""
import glob
import json
from dataclasses import asdict

import pytest
import torch

from checkpoint import load_checkpoint, save_checkpoint
from conftest import assert_one_line_error, run_script
from model import GPT, GPTConfig

TINY = ['--device=cpu', '--dtype=float32', '--compile=False', '--n_layer=2', '--n_head=2', '--n_embd=32',
        '--block_size=32', '--batch_size=4', '--gradient_accumulation_steps=1', '--eval_iters=2', '--warmup_iters=2',
        '--learning_rate=3e-3', '--lr_decay_iters=12']


def offline_env(root):
    """wandb offline, everything it writes (runs, cache, settings) under root, no error reports sent."""
    return {'WANDB_MODE': 'offline', 'WANDB_DIR': str(root), 'WANDB_CACHE_DIR': str(root / 'cache'),
            'WANDB_CONFIG_DIR': str(root / 'config'), 'WANDB_DATA_DIR': str(root / 'data'),
            'WANDB_ERROR_REPORTING': 'false'}


def offline_runs(root):
    """[(run id, config, {step: history row})] of every offline run under root, oldest first, as wandb's own
    reader of a run's .wandb log prints them (`wandb leet inspect --json`: one JSON record per line)."""
    runs = []
    for run_dir in sorted(glob.glob(str(root / 'wandb' / 'offline-run-*'))):
        proc = run_script('-m', 'wandb', 'leet', 'inspect', '--json', run_dir, env=offline_env(root))
        run_id, config, history = None, {}, {}
        for record in map(json.loads, proc.stdout.splitlines()):
            if record['type'] == 'run':
                run_id = record['run']['run_id']
                config.update(record['run']['config']['update'])
            elif record['type'] == 'config':
                config.update(record['config']['update'])
            elif record['type'] == 'history':
                history[record['history']['item']['_step']] = record['history']['item']
        config.pop('_wandb', None)  # wandb's own bookkeeping
        runs.append((run_id, config, history))
    return runs


def read_log(out):
    with open(out / 'log.jsonl') as f:
        return [json.loads(line) for line in f]


def assert_history_is_the_log(history, log):
    """Every record of log.jsonl is the wandb row at its iteration, key for key, and there is no other row."""
    assert sorted(history) == [record['iter'] for record in log]
    for record in log:
        assert {k: history[record['iter']][k] for k in record} == record


def test_train_logs_offline_and_a_resumed_run_continues_it(shakespeare_char, tmp_path):
    out, env = tmp_path / 'out', offline_env(tmp_path)
    common = ['train.py', '--dataset=shakespeare_char', f'--out_dir={out}', *TINY, '--eval_interval=4',
              '--wandb_log=True', '--wandb_project=tiny', '--wandb_run_name=offline']
    run_script(*common, '--max_iters=8', env=env)
    first_id = load_checkpoint(out / 'ckpt.pt')['wandb_run_id']
    run_script(*common, '--max_iters=12', '--init_from=resume', env=env)
    ckpt = load_checkpoint(out / 'ckpt.pt')
    (id_a, config_a, history_a), (id_b, config_b, history_b) = offline_runs(tmp_path)
    assert id_a == id_b == first_id == ckpt['wandb_run_id']  # one wandb run, continued
    assert sorted(history_a) == [0, 4, 8] and sorted(history_b) == [8, 12]  # iteration 8 is replayed, exactly
    losses = lambda row: (row['train_loss'], row['val_loss'])
    assert losses(history_a[8]) == losses(history_b[8])
    assert config_b == ckpt['config']
    assert (config_a['max_iters'], config_b['max_iters'], config_b['n_embd'], config_b['wandb_run_name']) == \
        (8, 12, 32, 'offline')
    assert_history_is_the_log({**history_a, **history_b}, read_log(out))  # the later run's rows win, as in the log


def test_rlhf_logs_offline(tmp_path, shakespeare_char):
    start, out, env = tmp_path / 'start', tmp_path / 'ppo', offline_env(tmp_path)
    torch.manual_seed(0)  # a random tiny character model as the starting policy
    gpt = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=65))
    save_checkpoint({'model': gpt.state_dict(), 'model_args': asdict(gpt.config), 'iter_num': 0, 'best_val_loss': 4.2,
                     'config': {'dataset': shakespeare_char}}, str(start / 'ckpt.pt'))
    run_script('rlhf.py', f'--init_from={start}', f'--out_dir={out}', '--reward=count:e', '--device=cpu',
               '--eval_iters=2', '--max_iters=3', '--batch_size=8', '--minibatch_size=8', '--prompt_len=4',
               '--max_new_tokens=8', '--eval_samples=8', '--wandb_log=True', env=env)
    [(_, config, history)] = offline_runs(tmp_path)
    assert (config['reward'], config['max_iters'], config['wandb_project']) == ('count:e', 3, 'rlhf')
    assert_history_is_the_log(history, read_log(out))


@pytest.mark.parametrize('script', ['train.py', 'rlhf.py'])
def test_a_missing_wandb_is_one_line_before_any_work(shakespeare_char, tmp_path, script):
    # a wandb that cannot be imported, ahead of the installed one on the path
    (tmp_path / 'no_wandb' / 'wandb').mkdir(parents=True)
    (tmp_path / 'no_wandb' / 'wandb' / '__init__.py').write_text("raise ImportError(\"No module named 'wandb'\")\n")
    out = tmp_path / 'out'
    args = ['--dataset=shakespeare_char', *TINY] if script == 'train.py' else ['--init_from=nowhere']
    proc = run_script(script, f'--out_dir={out}', *args, '--wandb_log=True', check=False,
                      env={'PYTHONPATH': str(tmp_path / 'no_wandb'), **offline_env(tmp_path)})
    assert_one_line_error(proc, 'wandb_log=True needs wandb', 'pip install wandb')
    assert not out.exists()
