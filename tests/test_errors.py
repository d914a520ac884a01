"""Bad input a user can give, each run as a user runs it: one `error: ...` line saying what is wrong and what
to do, exit code 2, no traceback, and no work done first."""
import os
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import hardware
from configurator import UserError
from conftest import REPO, assert_one_line_error, run_script

TINY = ['--device=cpu', '--dtype=float32', '--compile=False', '--n_layer=2', '--n_head=2', '--n_embd=32',
        '--block_size=32', '--batch_size=4', '--gradient_accumulation_steps=1', '--max_iters=2', '--eval_interval=2',
        '--eval_iters=2', '--log_interval=1', '--warmup_iters=1', '--lr_decay_iters=2']


def train(tmp_path, *args):
    # the bad value comes last, so it overrides TINY's good one
    return run_script('train.py', '--dataset=shakespeare_char', f'--out_dir={tmp_path / "out"}', *TINY, *args,
                      check=False)


# (argument, what the error line must say); every count and rate train.py takes
BAD_TRAIN_SETTINGS = [
    ('--gradient_accumulation_steps=0', 'gradient_accumulation_steps must be at least 1, got 0'),
    ('--eval_iters=0', 'eval_iters must be at least 1, got 0'),
    ('--eval_interval=0', 'eval_interval must be at least 1, got 0'),
    ('--log_interval=0', 'log_interval must be at least 1, got 0'),
    ('--batch_size=0', 'batch_size must be at least 1, got 0'),
    ('--max_iters=-1', 'max_iters must be at least 0, got -1'),
    ('--block_size=0', 'block_size must be at least 1, got 0'),
    ('--n_layer=0', 'n_layer must be at least 1, got 0'),
    ('--n_head=0', 'n_head must be at least 1, got 0'),
    ('--n_embd=0', 'n_embd must be at least 1, got 0'),
    ('--learning_rate=0', 'learning_rate must be above 0, got 0.0'),
    ('--learning_rate=-1e-3', 'learning_rate must be above 0, got -0.001'),
    ('--min_lr=-1e-5', 'min_lr must be at least 0, got -1e-05'),
    ('--warmup_iters=-1', 'warmup_iters must be at least 0, got -1'),
    ('--lr_decay_iters=0', 'lr_decay_iters must be at least 1, got 0'),
    ('--grad_clip=-1', 'grad_clip must be at least 0, got -1.0'),
    ('--weight_decay=-0.1', 'weight_decay must be at least 0, got -0.1'),
    ('--beta1=1', 'beta1 must be in [0, 1), got 1.0'),
    ('--beta2=-0.5', 'beta2 must be in [0, 1), got -0.5'),
    ('--beta2=1.5', 'beta2 must be in [0, 1), got 1.5'),
    ('--dropout=1', 'dropout must be in [0, 1), got 1.0'),
    ('--dropout=-0.1', 'dropout must be in [0, 1), got -0.1'),
]


def test_train_rejects_a_bad_count_or_rate_before_any_work(shakespeare_char, tmp_path):
    def check(i, arg, message):
        out = tmp_path / f'case{i}'
        proc = train(out, arg)
        name = arg[2:].split('=')[0]
        assert_one_line_error(proc, message, f'set --{name}=')
        assert 'tokens per iteration' not in proc.stdout, arg  # stopped at config time
        assert not (out / 'out').exists(), arg

    # two at a time: each case is its own train.py process, and most of its time is importing torch
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [pool.submit(check, i, arg, message) for i, (arg, message) in enumerate(BAD_TRAIN_SETTINGS)]:
            done.result()


def test_train_accepts_the_edges_of_each_range(shakespeare_char, tmp_path):
    """The bounds themselves are valid: no warmup, no clipping, no weight decay, beta1 = dropout = 0."""
    proc = run_script('train.py', '--dataset=shakespeare_char', f'--out_dir={tmp_path}', *TINY, '--max_iters=0',
                      '--warmup_iters=0', '--grad_clip=0', '--weight_decay=0', '--min_lr=0', '--beta1=0',
                      '--dropout=0', '--lr_decay_iters=1')
    assert 'step 0: train loss' in proc.stdout


@pytest.mark.parametrize('device, name', [('cuda', 'CUDA'), ('cuda:1', 'CUDA'), ('mps', 'MPS')])
def test_a_device_this_machine_lacks_is_one_line(tmp_path, device, name):
    if device.startswith('cuda') and torch.cuda.is_available():
        pytest.skip('this machine has a CUDA GPU')
    if device == 'mps' and torch.backends.mps.is_available():
        pytest.skip('this machine has MPS')
    # sample.py's set-up is the same hardware.setup() as every script's, and fails before it loads a model
    proc = run_script('sample.py', f'--out_dir={tmp_path}', f'--device={device}', check=False)
    assert_one_line_error(proc, f'--device={device}', name, '--device=cpu', '--device=auto')


def test_a_cuda_index_past_the_last_gpu_names_the_ones_there_are(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    with pytest.raises(UserError, match=r'--device=cuda:2: this machine has 2 CUDA GPU\(s\), cuda:0 to cuda:1'):
        hardware.check_device('cuda:2', 'cuda')
    hardware.check_device('cuda:1', 'cuda')  # fine


def test_a_config_file_with_a_syntax_error_names_the_file_and_line(tmp_path):
    config = tmp_path / 'my_config.py'
    config.write_text("batch_size = 4\nlearning_rate = (3e-4\nmax_iters = 10\n")
    proc = run_script('train.py', str(config), check=False)
    assert_one_line_error(proc, f'config file {config}, line 2', 'fix the Python syntax')
    assert 'tokens per iteration' not in proc.stdout


def test_prepare_into_an_out_dir_that_is_a_file(tmp_path):
    text = tmp_path / 'book.txt'
    text.write_text('Some text to prepare.\n' * 20)
    not_a_dir = tmp_path / 'already_a_file'
    not_a_dir.write_text('')
    proc = run_script('data/text/prepare.py', f'--input={text}', f'--out_dir={not_a_dir}', '--tokenizer=char',
                      check=False)
    assert_one_line_error(proc, f'--out_dir={not_a_dir} is (or lies under) an existing file', 'give the folder')
    assert not_a_dir.read_text() == ''
    # a folder under a file is the same mistake (os.makedirs would raise NotADirectoryError)
    proc = run_script('data/text/prepare.py', f'--input={text}', f'--out_dir={not_a_dir / "sub"}',
                      '--tokenizer=char', check=False)
    assert_one_line_error(proc, 'is (or lies under) an existing file')


@pytest.mark.parametrize('kind', ['directory', 'missing'])
def test_sample_start_file_that_is_not_a_file(tmp_path, kind):
    path = tmp_path if kind == 'directory' else tmp_path / 'no_such_prompt.txt'
    what = 'is a directory' if kind == 'directory' else 'not found'
    # the prompt is read before the model: no checkpoint is needed to see this error
    proc = run_script('sample.py', f'--out_dir={tmp_path}', '--device=cpu', f'--start=FILE:{path}', check=False)
    assert_one_line_error(proc, f'--start=FILE:{path}: {what}', 'give a text file')


@pytest.mark.parametrize('split', ['train', 'val'])
def test_a_token_file_of_odd_size_names_the_file(shakespeare_char, tmp_path, split):
    data = tmp_path / 'odd'
    data.mkdir()
    for s in ('train', 'val'):
        (data / f'{s}.bin').write_bytes(bytes(2 * 1000 + (s == split)))
    proc = run_script('train.py', f'--dataset={data}', f'--out_dir={tmp_path / "out"}', *TINY, check=False)
    assert_one_line_error(proc, f'{os.path.join(data, split)}.bin has an odd size (2001 bytes)',
                          "re-run the dataset's prepare.py")


# -----------------------------------------------------------------------------
# the convention itself: only the repo's UserError becomes one line

def script_with_configure(tmp_path, body):
    path = tmp_path / 'script.py'
    path.write_text(f"import sys\nsys.path.insert(0, {REPO!r})\nfrom configurator import UserError, configure\n"
                    f"seed = 1\nconfigure(globals())\n{body}")
    return str(path)


def test_a_bug_inside_a_library_call_keeps_its_traceback(tmp_path):
    # numpy raises a ValueError for a negative seed: a bug in the calling code, not a user error, so the user
    # (and whoever they report it to) needs the whole traceback, and the exit code of a crash
    proc = run_script(script_with_configure(tmp_path, "import numpy as np\nnp.random.default_rng(seed - 2)\n"),
                      check=False)
    assert proc.returncode == 1 and 'error: ' not in proc.stderr, proc.stderr
    assert 'Traceback' in proc.stderr and 'np.random.default_rng(seed - 2)' in proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1].startswith('ValueError: ')
    # the same goes for a FileNotFoundError from the standard library
    proc = run_script(script_with_configure(tmp_path, f"open({str(tmp_path / 'nowhere.txt')!r})\n"), check=False)
    assert proc.returncode == 1 and 'Traceback' in proc.stderr and 'FileNotFoundError' in proc.stderr


def test_a_user_error_is_one_line_and_still_runs_finally_and_atexit(tmp_path):
    body = ("import atexit\natexit.register(lambda: print('atexit handler ran', flush=True))\n"
            "try:\n    raise UserError('seed is wrong: pass --seed=2')\nfinally:\n    print('finally block ran')\n")
    proc = run_script(script_with_configure(tmp_path, body), check=False)
    assert_one_line_error(proc, 'seed is wrong: pass --seed=2')
    assert proc.stdout.splitlines()[-2:] == ['finally block ran', 'atexit handler ran'], proc.stdout
