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


def script_env(extra=None):
    """The environment scripts run in. One thread per process: on a busy 2-core machine torch's default of
    one per core thrashes, the suite's tiny models gain nothing from a second, and runs that are compared
    bit for bit must use the same thread count (it changes the order of float reductions)."""
    return {**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': '1', **(extra or {})}


def run_script(*args, cwd=REPO, timeout=600, check=True, env=None):
    """python <args...> in a subprocess; returns the CompletedProcess (stdout/stderr as text)."""
    proc = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=script_env(env))
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\n"
                             f"stderr:\n{proc.stderr[-3000:]}")
    return proc


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


@pytest.fixture(scope='session')
def quickstart_run(shakespeare_char, tmp_path_factory):
    """The README's first command, shortened: prepare (the fixture above), then the CPU quickstart config
    for a few hundred steps into a temporary out_dir; returns that out_dir."""
    out = tmp_path_factory.mktemp('quickstart')
    run_script('train.py', 'config/train_shakespeare_char_cpu.py', f'--out_dir={out}', '--max_iters=300',
               '--lr_decay_iters=300', '--eval_interval=150', '--eval_iters=10')
    return out
