"""train.py --parallelism=fsdp under torchrun on CPU (gloo), tiny fp32 models: the same training as one process,
an exact resume with dropout, and one checkpoint format with single-process runs and sample.py."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REPO, assert_one_line_error, run_script, script_env, script_env_without_malloc_settings
from test_train import TINY, assert_same_weights, evals, train

FSDP = ['--parallelism=fsdp']


def torchrun(out_dir, *args, env=None):
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'train.py',
           '--dataset=shakespeare_char', f'--out_dir={out_dir}', *TINY, *FSDP, *args]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, env=script_env(env))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def printed_losses(stdout):
    return [line.split(', time')[0] for line in stdout.splitlines() if line.startswith('iter ')]


@pytest.mark.parametrize('reduce_every', [True, False])  # reduce-scatter each micro-step, or the last only
def test_fsdp_trains_as_one_process_does(shakespeare_char, tmp_path, reduce_every):
    # 2 ranks x 2 micro-steps against 1 process x 4: the same global batch of every step; HellaSwag-style scoring at
    # each eval on 9 examples, 5 and 4 per rank: 2 batches of 4 against 1, so one rank runs a forward it does not count
    choices = tmp_path / 'choices.jsonl'
    choices.write_text(''.join(json.dumps({'context': f'ROMEO{"!" * i}:', 'endings': [' my lord', ' no', ' away'],
                                           'label': i % 3}) + '\n' for i in range(9)))
    common = ['--gradient_accumulation_steps=4', '--eval_interval=10', '--always_save_checkpoint=True',
              '--eval_hellaswag=True', f'--hellaswag_file={choices}']
    single = train(tmp_path / 'single', *common, '--max_iters=20')
    sharded = torchrun(tmp_path / 'fsdp', *common, '--max_iters=20', f'--fsdp_reduce_every_micro_step={reduce_every}')
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


def test_fsdp_compiles_each_block_with_its_checkpoint_inside(shakespeare_char, tmp_path):
    # --compile=True under FSDP compiles each block on its own before fully_shard, the activation checkpoint
    # inside its graph: no graph break (a whole-model compile breaks at every block's FSDP hooks and at the
    # checkpoint), the same training as the eager run within float tolerance (inductor fuses and reorders fp32
    # arithmetic), and a checkpoint whose keys are a bare GPT's (Module.compile wraps nothing: no '_orig_mod.')
    common = ['--max_iters=3', '--eval_interval=3', '--gradient_accumulation_steps=2',
              '--activation_checkpointing=True', '--always_save_checkpoint=True']
    torchrun(tmp_path / 'eager', *common)
    compiled = torchrun(tmp_path / 'compiled', *common, '--compile=True', env={'TORCH_LOGS': 'graph_breaks'})
    assert 'Graph break' not in compiled.stderr, compiled.stderr[-3000:]
    # 4.8e-7 measured on the Xeon (AMX); inductor vectorises differently on other CPUs: 10x that
    worst = assert_same_weights(tmp_path / 'eager' / 'ckpt.pt', tmp_path / 'compiled' / 'ckpt.pt', atol=5e-6)
    print(f"FSDP, 3 steps, per-block compile + activation checkpointing vs eager: max abs weight diff {worst:.2e}")
    keys = [set(torch.load(tmp_path / name / 'ckpt.pt', weights_only=True)['model']) for name in ('eager', 'compiled')]
    assert keys[0] == keys[1] and not any('_orig_mod' in k for k in keys[1])
    for a, b in zip(evals(tmp_path / 'eager'), evals(tmp_path / 'compiled'), strict=True):
        assert a['iter'] == b['iter'] and abs(a['val_loss'] - b['val_loss']) < 1e-5


def test_fsdp_bad_input_is_one_line(shakespeare_char, tmp_path):
    assert_one_line_error(train(tmp_path, '--parallelism=fsdp', check=False), 'launch it with torchrun',
                          '--nproc_per_node=1 works too')
    assert_one_line_error(train(tmp_path, '--parallelism=zero3', check=False), "parallelism must be 'ddp' or 'fsdp'")
    assert_one_line_error(train(tmp_path, '--checkpoint_format=zip', check=False),
                          "checkpoint_format must be 'ckpt' or 'sharded'")
    assert_one_line_error(run_script('sharding.py', f'--out_dir={tmp_path}', check=False), 'no sharded checkpoint',
                          '--checkpoint_format=sharded')


def test_fsdp_initial_weights_are_a_single_process_runs(shakespeare_char, tmp_path):
    # built on the meta device and initialised shard by shard, the model is bitwise the one one process builds for
    # the same seed (max_iters=0 saves the untrained model); the modern recipe too: untied head, zero-initialised
    # projections, biases, rotary angles (buffers) recomputed after to_empty
    for name, args in [('gpt2', []), ('modern', ['--rotary=True', '--tie_embeddings=False', '--zero_init_proj=True',
                                                 '--bias=True', '--qk_norm=True', '--n_embd=48', '--seed=7'])]:
        train(tmp_path / f'single-{name}', '--max_iters=0', *args)
        torchrun(tmp_path / f'fsdp-{name}', '--max_iters=0', '--gradient_accumulation_steps=2', *args)
        assert_same_weights(tmp_path / f'single-{name}' / 'ckpt.pt', tmp_path / f'fsdp-{name}' / 'ckpt.pt', atol=0.0)


def test_fsdp_peak_rss_per_rank_is_below_ddps_for_a_124m_model():
    # GPT-2 small's shape (12 x 768, 50304 tokens: 124M parameters), 1 step of a 1 x 64 batch, 2 gloo processes.
    # DDP holds weights, gradients, AdamW's moments and its buckets whole on each rank (~2.5 GiB); FSDP, built on
    # the meta device, 1/2 of the state. An FSDP run on a CPU has glibc give freed blocks of 4 MiB and up back to the
    # system (hardware.keep_freed_memory(keep=False)), so that its peak RSS is what its tensors needed at once, not
    # what a heap kept from earlier ones: nothing in the environment is set here.
    def peaks(parallelism):
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'bench.py',
               '--mode=train', f'--parallelism={parallelism}', '--n_layer=12', '--n_head=12', '--n_embd=768',
               '--vocab_size=50304', '--block_size=64', '--batch_size=1', '--warmup_steps=0', '--num_steps=1',
               '--device=cpu', '--dtype=float32', '--compile=False', '--peak_matmul_size=64', '--peak_repeats=1']
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                              env=script_env_without_malloc_settings())
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        line = next(x for x in proc.stdout.splitlines() if x.startswith('train: peak memory per process'))
        return [float(x.replace(',', '')) for x in line.split(': ')[-1].removesuffix(' MiB').split(', ')]  # 2,728
    ddp, fsdp = peaks('ddp'), peaks('fsdp')
    print(f"peak RSS per rank, 124M parameters, 2 gloo processes: DDP {ddp} MiB, FSDP {fsdp} MiB")
    assert len(ddp) == len(fsdp) == 2 and max(fsdp) < 0.7 * min(ddp)


def test_sharded_checkpoint_survives_kill_9_and_resumes_at_1_and_2_ranks(shakespeare_char, tmp_path):
    # 2 FSDP ranks save --checkpoint_format=sharded at iters 8 and 16; the second save is killed (-9, rank 0, between
    # DCP's write and the rename), which leaves iter 8's checkpoint whole. It resumes under FSDP on 2 ranks and in
    # one process, each to iter 16, equal to an uninterrupted run; `python sharding.py --out_dir=...` makes the ckpt.pt
    common = ['--gradient_accumulation_steps=4', '--eval_interval=8', '--always_save_checkpoint=True']
    sharded = [*common, '--checkpoint_format=sharded']
    torchrun(tmp_path / 'full', *common, '--max_iters=16')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'train.py',
           '--dataset=shakespeare_char', f'--out_dir={tmp_path / "killed"}', *TINY, *FSDP, *sharded, '--max_iters=16']
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=script_env({'GPT_TEST_KILL_AT': 'sharded-save:16'}))
    assert proc.returncode != 0 and 'step 16:' in proc.stdout
    assert sorted(p.name for p in (tmp_path / 'killed').iterdir() if p.name.startswith('ckpt')) == \
        ['ckpt.dcp-0', 'ckpt.dcp.tmp']  # iter 8's, whole, and the killed save's leftovers
    shutil.copytree(tmp_path / 'killed', tmp_path / 'one')
    torchrun(tmp_path / 'killed', *sharded, '--max_iters=16', '--init_from=resume')
    train(tmp_path / 'one', *sharded, '--max_iters=16', '--init_from=resume')
    for name in ('killed', 'one'):
        assert [r['iter'] for r in evals(tmp_path / name)] == [0, 8, 16]
        assert sorted(p.name for p in (tmp_path / name).iterdir() if p.name.startswith('ckpt')) == ['ckpt.dcp-1']
        run_script('sharding.py', f'--out_dir={tmp_path / name}')
    # the 2-rank resume is the same computation as the uninterrupted run: bitwise; one process sums the 4
    # micro-batches in another order
    assert_same_weights(tmp_path / 'full' / 'ckpt.pt', tmp_path / 'killed' / 'ckpt.pt', atol=0.0)
    assert_same_weights(tmp_path / 'full' / 'ckpt.pt', tmp_path / 'one' / 'ckpt.pt', atol=1e-5)
    # the converted ckpt.pt is an ordinary one: it samples, and resumes with its optimizer state
    proc = run_script('sample.py', f'--out_dir={tmp_path / "one"}', '--num_samples=1', '--max_new_tokens=5',
                      '--device=cpu')
    assert proc.stdout.count('---------------') == 1
    shutil.rmtree(tmp_path / 'one' / 'ckpt.dcp-1')
    resumed = train(tmp_path / 'one', *common, '--max_iters=17', '--eval_interval=17', '--init_from=resume')
    assert [line.split(':')[0] for line in printed_losses(resumed.stdout)] == ['iter 17']  # 1 step, from 16
    assert [r['iter'] for r in evals(tmp_path / 'one')] == [0, 8, 17]  # (a resume at 16 replays from 16 on)


def test_elastic_restart_after_a_lost_rank_ends_as_an_uninterrupted_run(shakespeare_char, tmp_path):
    # torchrun --max-restarts=1 with --init_from=auto (slurm/train.sbatch's line): rank 1 is killed (-9) before
    # iter 7; torchrun restarts both ranks, which resume from iter 4's checkpoint (losing iters 5 and 6 only) and end
    # at iter 12 with the weights of a run that was never interrupted
    common = ['--gradient_accumulation_steps=4', '--eval_interval=4', '--always_save_checkpoint=True',
              '--max_iters=12', '--dropout=0.1']
    torchrun(tmp_path / 'full', *common)
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', '--max-restarts=1',
           'train.py', '--dataset=shakespeare_char', f'--out_dir={tmp_path / "elastic"}', *TINY, *FSDP, *common,
           '--init_from=auto']
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=script_env({'GPT_TEST_KILL_AT': 'iter:6:1:0'}))  # iter:rank:attempt
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    steps = [line.split(':')[0] for line in printed_losses(proc.stdout)]
    assert steps == [f'iter {i}' for i in [*range(1, 7), *range(5, 13)]], steps
    assert 'Initializing a new model from scratch' in proc.stdout and 'Initializing from resume' in proc.stdout
    assert_same_weights(tmp_path / 'full' / 'ckpt.pt', tmp_path / 'elastic' / 'ckpt.pt', atol=0.0)
    assert [r['iter'] for r in evals(tmp_path / 'elastic')] == [0, 4, 8, 12]


def test_slurm_script_is_valid_bash():
    script = os.path.join(REPO, 'slurm', 'train.sbatch')
    proc = subprocess.run(['bash', '-n', script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with open(script) as f:
        text = f.read()
    assert '--rdzv_backend=c10d' in text and '--init_from=auto' in text and '--max-restarts=' in text


def test_a_new_run_over_a_sharded_checkpoint_is_refused(tmp_path):
    """check_new_run counts a sharded checkpoint (a ckpt.dcp-<n> directory) as a trained model, as it does ckpt.pt."""
    from checkpoint import check_new_run
    from configurator import UserError
    (tmp_path / 'ckpt.dcp-8').mkdir()
    with pytest.raises(UserError, match=r'ckpt.dcp-8 holds a trained model.*--init_from=resume'):
        check_new_run(str(tmp_path), 'scratch')
    check_new_run(str(tmp_path), 'resume')
    check_new_run(str(tmp_path), 'scratch', overwrite=True)
