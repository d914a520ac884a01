"""Shared fixtures: the repo root, running its scripts as a user would, and a prepared tiny Shakespeare."""
import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile

import pytest

# tests never touch the network: transformers and huggingface_hub must not try the hub
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The suite runs as on a CPU that emulates bf16 ('auto' is float32), so that it computes the same numbers on every
# machine; a test whose code path depends on the CPU's bf16 runs both ways through the cpu_kind fixture.
os.environ['GPT_CPU_BF16'] = 'emulated'


def script_env(extra=None):
    """The environment scripts run in. One thread per process: on a busy 2-core machine torch's default of
    one per core thrashes, the suite's tiny models gain nothing from a second, and runs that are compared
    bit for bit must use the same thread count (it changes the order of float reductions)."""
    return {**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': '1', **(extra or {})}


def script_env_without_malloc_settings(extra=None):
    """script_env with none of the runner's glibc malloc variables (MALLOC_*, GLIBC_TUNABLES), which would make
    hardware.keep_freed_memory step aside: scripts then set malloc up as they would on a user's machine. extra's
    own variables stay."""
    return {k: v for k, v in script_env(extra).items()
            if k in (extra or {}) or not (k.startswith('MALLOC_') or k == 'GLIBC_TUNABLES')}


@pytest.fixture(params=['native', 'emulated'])
def cpu_kind(request, monkeypatch):
    """Runs a test twice, as on a CPU with native bf16 (Zen 4, Sapphire Rapids) and as on one that emulates it
    (Zen 3, most laptops), whichever this machine is: GPT_CPU_BF16 stands in for torch's capability report, in this
    process and in the scripts it starts. For every test whose code path depends on the CPU's bf16."""
    monkeypatch.setenv('GPT_CPU_BF16', request.param)
    return request.param


def run_script(*args, cwd=REPO, timeout=600, check=True, env=None):
    """python <args...> in a subprocess; returns the CompletedProcess (stdout/stderr as text)."""
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=script_env(env))
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(autouse=True, scope='session')
def one_torch_thread():
    """In-process tests use one thread too, for script_env's reason: two workers' tiny ops thrash on two cores."""
    import torch
    torch.set_num_threads(1)


def assert_one_line_error(proc, *fragments):
    """A user error: exit code 2 (configurator's error hook), exactly one `error: ...` line on stderr
    containing every fragment, and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert 'Traceback' not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope='session')
def shakespeare_char():
    """data/shakespeare_char prepared (from the text shipped in the repo); returns the dataset name."""
    data_dir = os.path.join(REPO, 'data', 'shakespeare_char')
    # under `pytest -n 2` every worker runs this fixture: one prepares while the others wait on the lock
    lock_path = os.path.join(tempfile.gettempdir(), f"gpt-tests-{hashlib.sha1(REPO.encode()).hexdigest()[:12]}.lock")
    with open(lock_path, 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not all(os.path.exists(os.path.join(data_dir, f)) for f in ('train.bin', 'val.bin', 'meta.pkl')):
            run_script('data/shakespeare_char/prepare.py')
    return 'shakespeare_char'


def once_per_run(tmp_path_factory, name, make):
    """make(folder) in a fresh folder, once per test run: under `pytest -n 2` the workers share one folder of
    the run's temporary root, the first one makes it while the others wait on a lock (pytest-xdist's pattern)."""
    if 'PYTEST_XDIST_WORKER' not in os.environ:
        folder = tmp_path_factory.mktemp(name)
        make(folder)
        return folder
    folder = tmp_path_factory.getbasetemp().parent / name  # the run's root: shared by its workers, new each run
    with open(f'{folder}.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / 'done').exists():
            folder.mkdir(exist_ok=True)
            make(folder)
            (folder / 'done').touch()
    return folder


@pytest.fixture(scope='session')
def quickstart_run(shakespeare_char, tmp_path_factory):
    """The README's first command, shortened: prepare (the fixture above), then the CPU quickstart config
    for a few hundred steps into a temporary out_dir; returns that out_dir."""
    def make(out):
        run_script('train.py', 'config/train_shakespeare_char_cpu.py', f'--out_dir={out}', '--max_iters=300',
                   '--lr_decay_iters=300', '--eval_interval=150', '--eval_iters=10')
    return once_per_run(tmp_path_factory, 'quickstart', make)


@pytest.fixture(scope='session')
def sort_run(tmp_path_factory):
    """minGPT's sort task prepared, its held-out problems as a multiple-choice file, and a tiny model trained on
    it through train.py, which scores that file at each eval (--eval_hellaswag). Returns (data dir, out_dir,
    held-out problems, the multiple-choice file)."""
    from data.tasks import read_problems, write_choices
    from tokenizer import Tokenizer

    def make(root):
        data = root / 'data'
        run_script('data/sort/prepare.py', f'--out_dir={data}')
        held_out = read_problems(str(data), 'val', Tokenizer.from_meta(data / 'meta.pkl'))
        choices = write_choices(held_out, root / 'choices.jsonl')
        run_script('train.py', f'--dataset={data}', f'--out_dir={root / "out"}', '--device=cpu', '--compile=False',
                   '--dtype=float32', '--n_layer=2', '--n_head=4', '--n_embd=64', '--block_size=16', '--batch_size=32',
                   '--gradient_accumulation_steps=1', '--max_iters=400', '--lr_decay_iters=400', '--warmup_iters=20',
                   '--learning_rate=3e-3', '--eval_interval=400', '--eval_iters=2', '--log_interval=100',
                   '--eval_hellaswag=True', f'--hellaswag_file={choices}')
    root = once_per_run(tmp_path_factory, 'sort', make)
    data = root / 'data'
    held_out = read_problems(str(data), 'val', Tokenizer.from_meta(data / 'meta.pkl'))
    return data, root / 'out', held_out, root / 'choices.jsonl'
