"""Nothing the user had is lost, and faults are one line: an export never replaces a training run, a full disk at
any write (ckpt.pt, an export, a prepared dataset) keeps the previous files, a dataset half-replaced by a killed
prepare is refused, an export killed while replacing hf_dir leaves it whole and its leftovers are cleaned, damaged
inputs are one line, and written files follow the umask. Faults happen at exact points of real processes through
files.py's test hooks (GPT_TEST_FULL_DISK, GPT_TEST_KILL_AT), not through timing luck."""
import fcntl
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from conftest import REPO, assert_one_line_error, run_script, script_env
from test_train import TINY, train

KILLED = -signal.SIGKILL


def files_of(folder):
    """{name: bytes} of every file in folder (hidden ones too)."""
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder)) if (folder / name).is_file()}


@pytest.fixture(scope='module')
def run_dir(shakespeare_char, tmp_path_factory):
    """A tiny training run's out_dir: ckpt.pt, log.jsonl, .lock."""
    out = tmp_path_factory.mktemp('run') / 'o'
    train(out, '--max_iters=4', '--eval_interval=2')
    assert {'ckpt.pt', 'log.jsonl', '.lock'} <= set(os.listdir(out))
    return out


def export(run_dir, hf_dir, *args, env=None, check=True):
    return run_script('export.py', f'--out_dir={run_dir}', f'--hf_dir={hf_dir}', *args, env=env, check=check)


# -----------------------------------------------------------------------------
# an export never replaces a training run

def test_an_export_into_a_runs_folder_is_refused_and_the_run_kept(run_dir, tmp_path):
    before = files_of(run_dir)
    for overwrite in ('True', 'False'):
        proc = export(run_dir, run_dir, f'--overwrite={overwrite}', check=False)
        assert_one_line_error(proc, 'holds a training run', 'ckpt.pt', f'--hf_dir={run_dir}-hf')
    # a folder holding the run further down: --overwrite would replace it with all it holds
    assert_one_line_error(export(run_dir, run_dir.parent, '--overwrite=True', check=False), 'holds a training run')
    assert files_of(run_dir) == before
    export(run_dir, f'{run_dir}-hf')  # the way out the error names
    assert files_of(run_dir) == before


# -----------------------------------------------------------------------------
# a full disk: one line, how much was needed and where, the previous files as they were, no temporary left

def assert_full_disk_line(proc, path):
    line = assert_one_line_error(proc, 'no space left on device writing', str(path), 'it needs about', 'free')
    assert 'Nothing was replaced' in line, line


def test_a_full_disk_at_a_checkpoint_save_keeps_the_previous_one(run_dir, tmp_path):
    out = tmp_path / 'o'
    shutil.copytree(run_dir, out)
    before = (out / 'ckpt.pt').read_bytes()
    proc = train(out, '--max_iters=6', '--eval_interval=2', '--init_from=resume', check=False,
                 env={'GPT_TEST_FULL_DISK': 'ckpt.pt'})
    assert_full_disk_line(proc, out / 'ckpt.pt')
    assert (out / 'ckpt.pt').read_bytes() == before
    assert not [f for f in os.listdir(out) if f.endswith('.tmp')]


def test_a_full_disk_during_an_export_keeps_the_previous_export(run_dir, tmp_path):
    hf = tmp_path / 'hf'
    export(run_dir, hf)
    before = files_of(hf)
    proc = export(run_dir, hf, '--overwrite=True', env={'GPT_TEST_FULL_DISK': 'model.safetensors'}, check=False)
    assert_full_disk_line(proc, hf)
    assert files_of(hf) == before and os.listdir(tmp_path) == ['hf']


def test_a_full_disk_during_a_prepare_keeps_the_previous_dataset(tmp_path):
    run_script('data/shakespeare_char/prepare.py', f'--out_dir={tmp_path}')
    before = files_of(tmp_path)
    proc = run_script('data/shakespeare_char/prepare.py', f'--out_dir={tmp_path}', check=False,
                      env={'GPT_TEST_FULL_DISK': 'val.bin'})
    assert_full_disk_line(proc, tmp_path)
    assert '2.2 MB' in proc.stderr  # what the three files need: 2 bytes a token, 1,115,394 tokens, and meta.pkl
    assert files_of(tmp_path) == before


def test_the_errors_a_real_full_disk_raises_are_recognised(tmp_path):
    """/dev/full fails every write with ENOSPC, as a full disk does: torch.save's error chain and a plain write
    reaching a script's top are one line (safetensors reports it only in its message, which is matched too)."""
    from safetensors import SafetensorError

    from configurator import UserError
    from files import disk_full_errno, space_for
    with pytest.raises(UserError, match=r'no space left on device writing x/ckpt.pt: it needs about 4.0 MB'):
        with space_for('x/ckpt.pt', 4_000_000), open('/dev/full', 'wb') as f:
            torch.save({'w': torch.zeros(1_000_000)}, f)
    rust = SafetensorError('Error while serializing: I/O error: No space left on device (os error 28)')
    assert disk_full_errno(rust) == 28 and disk_full_errno(SafetensorError('header too large')) is None
    assert disk_full_errno(RuntimeError('unexpected pos')) is None
    code = "import configurator; configurator.install_error_hook(); open('/dev/full', 'w').write('x' * 100_000)"
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, env=script_env())
    assert_one_line_error(proc, 'no space left on device while writing a file')


# -----------------------------------------------------------------------------
# a dataset half-replaced by a killed prepare

def test_a_dataset_half_replaced_by_a_killed_prepare_is_refused(shakespeare_char, tmp_path):
    text = tmp_path / 'input.txt'
    data = tmp_path / 'data'
    with open(os.path.join(REPO, 'data', 'shakespeare_char', 'input.txt'), encoding='utf-8') as f:
        shakespeare = f.read()
    text.write_text(shakespeare[:200_000], encoding='utf-8')
    run_script('data/text/prepare.py', f'--input={text}', f'--out_dir={data}')
    old = files_of(data)
    os.remove(data / 'manifest.json')  # as nanoGPT's prepare leaves a dataset: it still loads
    import dataloader
    assert dataloader.check_dataset(str(data), 32) == str(data)
    # a second generation, killed between its two renames: a new train.bin beside the old val.bin
    text.write_text(shakespeare[200_000:500_000], encoding='utf-8')
    proc = run_script('data/text/prepare.py', f'--input={text}', f'--out_dir={data}', check=False,
                      env={'GPT_TEST_KILL_AT': 'prepare-renames'})
    assert proc.returncode == KILLED, proc.stderr
    assert (data / 'train.bin').read_bytes() != old['train.bin'] and (data / 'val.bin').read_bytes() == old['val.bin']
    proc = train(tmp_path / 'o', f'--dataset={data}', '--max_iters=2', check=False)
    assert_one_line_error(proc, str(data / 'val.bin'), 'different runs of its prepare', 'prepare.py')
    assert not (tmp_path / 'o' / 'ckpt.pt').exists()
    # prepared again to the end, it trains
    run_script('data/text/prepare.py', f'--input={text}', f'--out_dir={data}')
    assert dataloader.check_dataset(str(data), 32) == str(data)


# -----------------------------------------------------------------------------
# an export killed while replacing hf_dir

def test_an_export_killed_while_replacing_hf_dir_leaves_it_whole_and_the_next_cleans_up(run_dir, tmp_path):
    hf = tmp_path / 'hf'
    export(run_dir, hf)
    first = files_of(hf)
    for point in ('export-swap', 'export-swapped'):  # just before the new folder replaces hf_dir, and just after
        proc = export(run_dir, hf, '--overwrite=True', env={'GPT_TEST_KILL_AT': point}, check=False)
        assert proc.returncode == KILLED, proc.stderr
        assert {'config.json', 'model.safetensors', 'tokenizer.json', 'README.md'} <= set(os.listdir(hf))
        assert files_of(hf)['model.safetensors'] == first['model.safetensors']
        assert len(os.listdir(tmp_path)) == 2  # hf and this killed export's .hf.tmp-*: the last one's was removed
        assert proc.stdout.count('left by an export that was killed') == (point == 'export-swapped')
    # a live export's temporary folder (its lock held) is left alone; the dead ones' are removed
    live = tmp_path / '.hf.tmp-live1234'
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        proc = export(run_dir, hf, '--overwrite=True')
    finally:
        os.close(fd)
    assert proc.stdout.count('left by an export that was killed') == 1
    assert sorted(os.listdir(tmp_path)) == ['.hf.tmp-live1234', 'hf']


def test_a_later_export_puts_back_an_hf_dir_a_killed_export_had_moved_aside(run_dir, tmp_path):
    """Where no exchange rename exists, --overwrite renames hf_dir into .NAME.old-*/dir, then the new folder to
    hf_dir: a kill between the two leaves no hf_dir (the state here, as the trial found it)."""
    hf = tmp_path / 'hf'
    export(run_dir, hf)
    first = files_of(hf)
    (tmp_path / '.hf.old-abcd1234').mkdir()
    os.rename(hf, tmp_path / '.hf.old-abcd1234' / 'dir')
    (tmp_path / '.hf.tmp-efgh5678').mkdir()
    (tmp_path / '.hf.tmp-efgh5678' / 'config.json').write_text('{}')
    proc = export(run_dir, hf, check=False)  # no --overwrite: the folder put back is not replaced
    assert_one_line_error(proc, 'exists and is not empty')
    assert 'put back' in proc.stdout
    assert files_of(hf) == first and os.listdir(tmp_path) == ['hf']


# -----------------------------------------------------------------------------
# one line, not a traceback

def test_damaged_inputs_are_one_line(run_dir, tmp_path):
    prompt = tmp_path / 'prompt.txt'
    prompt.write_bytes(b'ROMEO:\n\xff\xfe')
    proc = run_script('sample.py', f'--out_dir={run_dir}', f'--start=FILE:{prompt}', '--device=cpu', check=False)
    assert_one_line_error(proc, 'is not UTF-8 text', 'byte 0xff at byte offset 7')
    export(run_dir, tmp_path / 'hf')
    bad_config, bad_weights = tmp_path / 'bad_config', tmp_path / 'bad_weights'
    shutil.copytree(tmp_path / 'hf', bad_config)
    shutil.copytree(tmp_path / 'hf', bad_weights)
    (bad_config / 'config.json').write_text('{"n_layer": 2,')
    proc = run_script('sample.py', f'--init_from={bad_config}', '--device=cpu', check=False)
    assert_one_line_error(proc, 'config.json is not a JSON config')
    (bad_weights / 'model.safetensors').write_bytes(os.urandom(4096))
    proc = run_script('sample.py', f'--init_from={bad_weights}', '--device=cpu', check=False)
    assert_one_line_error(proc, 'cannot read', 'model.safetensors', 'corrupt or truncated')
    # a ckpt.pt of random bytes: torch's advice to load it with weights_only=False (running its code) is not passed on
    (tmp_path / 'o').mkdir()
    (tmp_path / 'o' / 'ckpt.pt').write_bytes(os.urandom(4096))
    proc = run_script('sample.py', f'--out_dir={tmp_path / "o"}', '--device=cpu', check=False)
    line = assert_one_line_error(proc, 'cannot read checkpoint', 'corrupt or truncated')
    assert 'weights_only' not in proc.stderr and 'weights_only' not in line


def test_a_malformed_tldr_input_is_one_line_naming_the_line(tmp_path):
    env = {'HF_DATASETS_OFFLINE': '1', 'HF_DATASETS_CACHE': str(tmp_path / 'cache')}
    bad = tmp_path / 'posts.jsonl'
    bad.write_text('{"prompt": "a post\\nTL;DR:", "label": "a summary"}\n{"prompt": "b", "label": \n')
    args = [f'--input={bad}', '--comparisons=', f'--out_dir={tmp_path / "out"}']
    proc = run_script('data/tldr/prepare.py', *args, check=False, env=env)
    assert_one_line_error(proc, f'{bad}:2: not a JSON object')
    assert 'Failed to load JSON' not in proc.stderr and 'Generating' not in proc.stderr, proc.stderr
    bad.write_bytes(b'{"prompt": "a post \xff\\nTL;DR:", "label": "a summary"}\n')
    proc = run_script('data/tldr/prepare.py', *args, check=False, env=env)
    assert_one_line_error(proc, 'is not UTF-8 text', '--errors=replace')
    proc = run_script('data/tldr/prepare.py', *args, '--errors=replace', check=False, env=env)
    assert 'UTF-8' not in proc.stderr and 'unknown config key' not in proc.stderr, proc.stderr  # read past the byte


# -----------------------------------------------------------------------------
# permissions and size

def test_checkpoints_and_exports_follow_the_umask(shakespeare_char, tmp_path):
    def with_umask(*args):
        proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600,
                              env=script_env(), preexec_fn=lambda: os.umask(0o027))
        assert proc.returncode == 0, proc.stderr[-2000:]
    out, hf = tmp_path / 'o', tmp_path / 'hf'
    with_umask('train.py', '--dataset=shakespeare_char', f'--out_dir={out}', *TINY, '--max_iters=2',
               '--eval_interval=2')
    with_umask('export.py', f'--out_dir={out}', f'--hf_dir={hf}')
    assert oct(os.stat(out / 'ckpt.pt').st_mode & 0o777) == oct(0o640)
    assert oct(os.stat(hf).st_mode & 0o777) == oct(0o750)
    for name in os.listdir(hf):
        assert oct(os.stat(hf / name).st_mode & 0o777) == oct(0o640), name


def test_an_fsdp_checkpoint_stores_the_tied_weight_once(shakespeare_char, tmp_path):
    from test_fsdp import torchrun
    common = ['--max_iters=2', '--eval_interval=2', '--gradient_accumulation_steps=2']
    torchrun(tmp_path / 'fsdp', *common)
    train(tmp_path / 'single', *common)
    sd = torch.load(tmp_path / 'fsdp' / 'ckpt.pt', weights_only=True)['model']
    storage = {k: sd[k].untyped_storage().data_ptr() for k in ('lm_head.weight', 'transformer.wte.weight')}
    assert storage['lm_head.weight'] == storage['transformer.wte.weight']  # one tensor under two names
    fsdp, single = (os.path.getsize(tmp_path / d / 'ckpt.pt') for d in ('fsdp', 'single'))
    assert abs(fsdp - single) < 0.01 * single, (fsdp, single)  # the same checkpoint, whatever the parallelism
