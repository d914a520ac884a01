"""train.py --parallelism=fsdp under torchrun on CPU (gloo), tiny fp32 models: the same training as one process,
an exact resume with dropout, and one checkpoint format with single-process runs and sample.py."""
import json
import shutil
import subprocess
import sys

from conftest import REPO, assert_one_line_error, run_script, script_env
from test_train import TINY, assert_same_weights, evals, train

FSDP = ['--parallelism=fsdp']


def torchrun(out_dir, *args):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'train.py',
           '--dataset=shakespeare_char', f'--out_dir={out_dir}', *TINY, *FSDP, *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=script_env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def printed_losses(stdout):
    return [line.split(', time')[0] for line in stdout.splitlines() if line.startswith('iter ')]


def test_fsdp_trains_as_one_process_does(shakespeare_char, tmp_path):
    # 2 ranks x 2 micro-steps against 1 process x 4: the same global batch of every step; HellaSwag-style scoring at
    # each eval on 9 examples, 5 and 4 per rank: 2 batches of 4 against 1, so one rank runs a forward it does not count
    choices = tmp_path / 'choices.jsonl'
    choices.write_text(''.join(json.dumps({'context': f'ROMEO{"!" * i}:', 'endings': [' my lord', ' no', ' away'],
                                           'label': i % 3}) + '\n' for i in range(9)))
    common = ['--gradient_accumulation_steps=4', '--eval_interval=10', '--always_save_checkpoint=True',
              '--eval_hellaswag=True', f'--hellaswag_file={choices}']
    single = train(tmp_path / 'single', *common, '--max_iters=20')
    sharded = torchrun(tmp_path / 'fsdp', *common, '--max_iters=20')
    worst = assert_same_weights(tmp_path / 'single' / 'ckpt.pt', tmp_path / 'fsdp' / 'ckpt.pt', atol=1e-5)
    print(f"FSDP (2 ranks x 2 micro-steps) vs 1 process x 4 micro-steps, 20 steps: max abs weight diff {worst:.2e}")
    # the printed loss of every step (the mean over all ranks' micro-batches) and the evals' losses
    assert printed_losses(sharded.stdout) == printed_losses(single.stdout) and len(printed_losses(single.stdout)) == 20
    for a, b in zip(evals(tmp_path / 'single'), evals(tmp_path / 'fsdp')):
        assert a['iter'] == b['iter'] and abs(a['val_loss'] - b['val_loss']) < 1e-5
        assert abs(a['train_loss'] - b['train_loss']) < 1e-5
        assert a['hellaswag_acc_norm'] == b['hellaswag_acc_norm'] and a['hellaswag_acc'] == b['hellaswag_acc']
    assert sharded.stdout.count('hellaswag acc_norm') == 3 and 'on 9 examples' in sharded.stdout
    # (an FSDP run resumes a single-process checkpoint through the same code as its own: the file is the same
    # format, which the next test shows by resuming an FSDP checkpoint in one process)


def test_fsdp_resume_with_dropout_is_exact_and_its_checkpoint_is_an_ordinary_one(shakespeare_char, tmp_path):
    common = ['--gradient_accumulation_steps=4', '--eval_interval=8', '--always_save_checkpoint=True', '--dropout=0.1']
    torchrun(tmp_path / 'full', *common, '--max_iters=16')
    torchrun(tmp_path / 'part', *common, '--max_iters=8')
    torchrun(tmp_path / 'part', *common, '--max_iters=16', '--init_from=resume')
    assert_same_weights(tmp_path / 'full' / 'ckpt.pt', tmp_path / 'part' / 'ckpt.pt', atol=0.0)
    # the FSDP checkpoint samples with sample.py and resumes in one process
    proc = run_script('sample.py', f'--out_dir={tmp_path / "part"}', '--num_samples=1', '--max_new_tokens=20',
                      '--device=cpu')
    assert proc.stdout.count('---------------') == 1
    shutil.copytree(tmp_path / 'part', tmp_path / 'single')
    train(tmp_path / 'single', *common, '--max_iters=20', '--eval_interval=4', '--init_from=resume')
    log = evals(tmp_path / 'single')
    assert [r['iter'] for r in log] == [0, 8, 16, 20] and log[-1]['val_loss'] < log[0]['val_loss']
    assert json.loads((tmp_path / 'single' / 'log.jsonl').read_text().splitlines()[-1])['iter'] == 20


def test_fsdp_bad_input_is_one_line(shakespeare_char, tmp_path):
    assert_one_line_error(train(tmp_path, '--parallelism=fsdp', check=False), 'launch it with torchrun',
                          '--nproc_per_node=1 works too')
    assert_one_line_error(train(tmp_path, '--parallelism=zero3', check=False), "parallelism must be 'ddp' or 'fsdp'")
