"""train.py, run as a user runs it: learning, DDP equivalence, exact resume, eval_only, bad input."""
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, fields

import numpy as np
import pytest
import torch

import dataloader
from checkpoint import load_checkpoint
from configurator import UserError
from conftest import REPO, assert_one_line_error, run_script, script_env

# a tiny model, fp32 on the CPU, so runs are fast and bitwise reproducible
TINY = ['--device=cpu', '--dtype=float32', '--compile=False', '--n_layer=2', '--n_head=2', '--n_embd=32',
        '--block_size=32', '--batch_size=4', '--gradient_accumulation_steps=1', '--eval_iters=4', '--log_interval=1',
        '--warmup_iters=2', '--learning_rate=3e-3', '--min_lr=3e-4', '--lr_decay_iters=20']


# the modern recipe's switches, all on, with Muon (model.py, optim.py)
MODERN = ['--rotary=True', '--qk_norm=True', '--rmsnorm=True', '--relu_squared=True', '--tie_embeddings=False',
          '--logit_softcap=15.0', '--zero_init_proj=True', '--embedding_norm=True', '--optimizer=muon',
          '--muon_lr=0.02']


def train(out_dir, *args, check=True, env=None):
    return run_script('train.py', '--dataset=shakespeare_char', f'--out_dir={out_dir}', *TINY, *args,
                      check=check, env=env)


def test_float32_on_a_cpu_trains_eager_unless_told_to_compile(tmp_path):
    """compile defaults to True (nanoGPT's, a GPU's), but in float32 on a CPU, where it bought nothing, a run that does
    not set it trains eager and says so in one line."""
    args = [a for a in TINY if a != '--compile=False']
    proc = run_script('train.py', '--dataset=shakespeare_char', f'--out_dir={tmp_path}', *args, '--max_iters=2')
    assert 'not compiling: compile=False is the default for float32 on a CPU' in proc.stdout
    assert 'compiling the model' not in proc.stdout


def evals(out_dir):
    with open(os.path.join(out_dir, 'log.jsonl')) as f:
        return [json.loads(line) for line in f]


def assert_same_weights(a, b, atol=0.0):
    sd_a, sd_b = load_checkpoint(a)['model'], load_checkpoint(b)['model']
    assert sd_a.keys() == sd_b.keys()
    worst = max((sd_a[k].float() - sd_b[k].float()).abs().max().item() for k in sd_a)
    assert worst <= atol, f"max abs weight difference {worst:.3g} > {atol}"
    return worst


def test_tiny_model_learns_shakespeare(shakespeare_char, tmp_path):
    out = tmp_path / 'out'
    train(out, '--n_layer=2', '--n_embd=64', '--n_head=4', '--block_size=64', '--batch_size=16',
          '--learning_rate=1e-2', '--min_lr=1e-3', '--warmup_iters=10', '--max_iters=600', '--lr_decay_iters=600',
          '--eval_interval=300', '--eval_iters=10', '--log_interval=100')
    log = evals(out)
    assert 4.0 < log[0]['val_loss'] < 4.4, log[0]  # ~ln(65) = 4.17 at init
    assert log[-1]['iter'] == 600 and log[-1]['val_loss'] < 2.5, log[-1]
    ckpt = load_checkpoint(str(out / 'ckpt.pt'))
    for key in ('model', 'optimizer', 'model_args', 'iter_num', 'best_val_loss', 'config', 'scaler', 'tokenizer'):
        assert key in ckpt
    assert ckpt['model_args']['vocab_size'] == 65 and ckpt['iter_num'] == 600
    assert not any(k.startswith(('_orig_mod.', 'module.')) for k in ckpt['model'])


def test_auto_precision_trains_on_either_cpu_kind(shakespeare_char, tmp_path, cpu_kind):
    """dtype='auto' (no --dtype): bf16 autocast, with the explicit attention path, where the CPU has native bf16, and
    float32 where it emulates it; the loss falls either way."""
    args = [a for a in TINY if not a.startswith('--dtype')]
    out = run_script('train.py', '--dataset=shakespeare_char', f'--out_dir={tmp_path}', *args, '--max_iters=30',
                     '--eval_interval=30', '--learning_rate=1e-2', '--lr_decay_iters=30').stdout
    assert f"cpu, {'bfloat16' if cpu_kind == 'native' else 'float32'}; MFU" in out
    log = evals(tmp_path)
    assert log[-1]['val_loss'] < log[0]['val_loss'] - 0.5, log


def test_batches_depend_only_on_seed_and_step(shakespeare_char):
    data_dir = dataloader.check_dataset(shakespeare_char, 32)
    batches = lambda start_step, micro_steps, rank: dataloader.train_batches(
        data_dir, seed=7, start_step=start_step, batch_size=2, block_size=32, grad_accum=4, micro_steps=micro_steps,
        rank=rank, vocab_size=65, device='cpu')
    # 4 micro-batches of 2 for one step: one process with accumulation 4, or 2 ranks x 2 micro-steps
    def step_windows(rank, micro_steps, start_step=3):
        stream = batches(start_step, micro_steps, rank)
        return [next(stream) for _ in range(micro_steps)]
    single = step_windows(0, 4)
    ranks = step_windows(0, 2) + step_windows(1, 2)
    for (x1, y1), (x2, y2) in zip(single, ranks):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert torch.equal(x1[:, 1:], y1[:, :-1])  # targets are the inputs shifted by one
    # a stream started at step 4 (a resume) continues with the same batches
    later = batches(3, 4, 0)
    for _ in range(4):
        next(later)
    resumed = batches(4, 4, 0)
    assert torch.equal(next(later)[0], next(resumed)[0])


@pytest.mark.parametrize('recipe, cpu_bf16', [([], None), (MODERN, 'native')], ids=['gpt2', 'modern_muon-native_bf16'])
def test_ddp_two_processes_match_one_process(shakespeare_char, tmp_path, monkeypatch, recipe, cpu_bf16):
    # Muon's iteration is float32 in a float32 run whatever the CPU: here as on a CPU with native bf16 (where it once
    # iterated in bf16), and test_muon_in_a_float32_run_is_the_same_on_every_cpu_kind shows the other kind bitwise equal
    if cpu_bf16:
        monkeypatch.setenv('GPT_CPU_BF16', cpu_bf16)
    common = ['--max_iters=20', '--eval_interval=20', '--gradient_accumulation_steps=4',
              '--always_save_checkpoint=True', *recipe]
    train(tmp_path / 'single', *common)
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'train.py']
    proc = subprocess.run(torchrun + ['--dataset=shakespeare_char', f'--out_dir={tmp_path / "ddp"}', *TINY, *common],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env=script_env())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    if recipe:  # Muon's iteration is split over the ranks, its updates all-gathered (optim.Muon)
        assert 'orthogonalized in float32, each of 2 ranks its share' in proc.stdout
    worst = assert_same_weights(tmp_path / 'single' / 'ckpt.pt', tmp_path / 'ddp' / 'ckpt.pt', atol=1e-5)
    print(f"DDP (2 ranks x 2 micro-steps) vs 1 process x 4 micro-steps: max abs weight diff {worst:.2e}")
    single, ddp = evals(tmp_path / 'single'), evals(tmp_path / 'ddp')
    assert abs(single[-1]['val_loss'] - ddp[-1]['val_loss']) < 1e-5


def test_muon_in_a_float32_run_is_the_same_on_every_cpu_kind(shakespeare_char, tmp_path, monkeypatch):
    """--dtype=float32 orthogonalizes in float32 whatever the CPU: the same weights, bit for bit, whether the CPU
    is taken for one with native bf16 or one that emulates it (GPT_CPU_BF16)."""
    for kind in ('native', 'emulated'):
        monkeypatch.setenv('GPT_CPU_BF16', kind)
        out = train(tmp_path / kind, *MODERN, '--max_iters=6', '--eval_interval=6').stdout
        assert 'orthogonalized in float32' in out
    assert_same_weights(tmp_path / 'native' / 'ckpt.pt', tmp_path / 'emulated' / 'ckpt.pt', atol=0.0)


@pytest.mark.parametrize('recipe', [[], MODERN], ids=['gpt2', 'modern_muon'])
def test_resume_is_bitwise_exact(shakespeare_char, tmp_path, recipe):
    # dropout on, so the resumed run must also draw the dropout masks it would have drawn; with Muon, its momentum
    # buffers come back from ckpt.pt too
    common = ['--max_iters=16', '--eval_interval=4', '--dropout=0.1', '--always_save_checkpoint=True', *recipe]
    full = train(tmp_path / 'full', *common)
    train(tmp_path / 'part', *common, '--max_iters=8')
    resumed = train(tmp_path / 'part', *common, '--init_from=resume')
    assert_same_weights(tmp_path / 'full' / 'ckpt.pt', tmp_path / 'part' / 'ckpt.pt', atol=0.0)
    full_log = {e['iter']: (e['train_loss'], e['val_loss']) for e in evals(tmp_path / 'full')}
    part_log = {e['iter']: (e['train_loss'], e['val_loss']) for e in evals(tmp_path / 'part')}
    assert full_log == part_log
    # the per-step training losses printed after the resume point are identical too
    steps = lambda out: [line.split(', time')[0] for line in out.splitlines()
                         if line.startswith('iter ') and int(line.split()[1][:-1]) > 8]
    assert steps(full.stdout) == steps(resumed.stdout)


def test_sigterm_saves_and_resumes_exactly(shakespeare_char, tmp_path):
    # the stopped run has no end of its own (max_iters far off), so only the signal can end it, however busy the
    # machine; the reference then trains to 10 iterations past wherever the stop landed
    common = ['--eval_interval=1000000', '--always_save_checkpoint=True']
    out = tmp_path / 'stopped'
    cmd = [sys.executable, 'train.py', '--dataset=shakespeare_char', f'--out_dir={out}', *TINY, *common,
           '--max_iters=1000000']
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=script_env())
    for line in proc.stdout:  # stop it mid-run, after step 5
        if line.startswith('iter 5:'):
            proc.send_signal(signal.SIGTERM)
            break
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and 'saving checkpoint' in rest and 'stopped by signal' in rest, rest + err
    stopped_at = load_checkpoint(str(out / 'ckpt.pt'))['iter_num']
    assert stopped_at >= 5
    end = f'--max_iters={stopped_at + 10}'
    train(tmp_path / 'full', *common, end)
    train(out, *common, end, '--init_from=resume')
    assert_same_weights(tmp_path / 'full' / 'ckpt.pt', out / 'ckpt.pt', atol=0.0)


def test_eval_only_matches_transformers_on_a_local_hf_dir(shakespeare_char, tmp_path):
    transformers = pytest.importorskip('transformers')
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=65,
                                                              n_positions=32)).eval()
    hf.save_pretrained(tmp_path / 'hf')
    out = tmp_path / 'out'
    proc = train(out, f'--init_from={tmp_path / "hf"}', '--eval_only=True', '--eval_iters=3', '--seed=5')
    assert 'step 0: train loss' in proc.stdout
    with open(out / 'eval.jsonl') as f:  # eval_only runs log apart from the training curve
        reported = json.loads(f.readline())
    assert not (out / 'ckpt.pt').exists() and not (out / 'log.jsonl').exists()  # nor a checkpoint
    data_dir = dataloader.check_dataset(shakespeare_char, 32)
    for split in ('train', 'val'):
        losses = []
        for k in range(3):
            x, y = dataloader.eval_batch(data_dir, split, 5, k, 4, 32, 65)
            with torch.no_grad():
                losses.append(hf(torch.from_numpy(x), labels=None).logits.flatten(0, 1)
                              .log_softmax(-1).gather(1, torch.from_numpy(y).reshape(-1, 1)).neg().mean().item())
        expected = float(np.mean(losses))
        assert abs(reported[f'{split}_loss'] - expected) < 1e-4, (split, reported, expected)


# nanoGPT's model, as far as loading a checkpoint goes (karpathy/nanoGPT's model.py, written here from its
# signatures): its GPTConfig takes exactly these seven fields, and its GPT has these parameter names and shapes.
@dataclass
class NanoGPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True


class NanoGPTLayerNorm(torch.nn.Module):  # nanoGPT's own LayerNorm: a weight, and a bias only with bias=True
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(ndim))
        self.bias = torch.nn.Parameter(torch.zeros(ndim)) if bias else None


def nanogpt_model(config):
    """An nn.Module with nanoGPT's GPT(config)'s state_dict keys and shapes (flash attention: no mask buffer)."""
    nn, C, bias = torch.nn, config.n_embd, config.bias
    block = lambda: nn.ModuleDict(dict(
        ln_1=NanoGPTLayerNorm(C, bias),
        attn=nn.ModuleDict(dict(c_attn=nn.Linear(C, 3 * C, bias=bias), c_proj=nn.Linear(C, C, bias=bias))),
        ln_2=NanoGPTLayerNorm(C, bias),
        mlp=nn.ModuleDict(dict(c_fc=nn.Linear(C, 4 * C, bias=bias), c_proj=nn.Linear(4 * C, C, bias=bias)))))
    model = nn.Module()
    model.transformer = nn.ModuleDict(dict(wte=nn.Embedding(config.vocab_size, C),
                                           wpe=nn.Embedding(config.block_size, C),
                                           h=nn.ModuleList([block() for _ in range(config.n_layer)]),
                                           ln_f=NanoGPTLayerNorm(C, config.bias)))
    model.lm_head = nn.Linear(C, config.vocab_size, bias=False)
    model.transformer.wte.weight = model.lm_head.weight
    return model


def assert_nanogpt_loads(path):
    """What nanoGPT's sample.py and train.py --init_from=resume do with a ckpt.pt: torch.load (weights_only, torch's
    default since 2.6), GPTConfig(**model_args), strip '_orig_mod.', load_state_dict (strict), and for a resume its
    two AdamW groups (decayed 2-D tensors, then the rest) take the saved optimizer state."""
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    model = nanogpt_model(NanoGPTConfig(**ckpt['model_args']))  # a TypeError on any key nanoGPT does not know
    model.load_state_dict({k.removeprefix('_orig_mod.'): v for k, v in ckpt['model'].items()})
    params = list(model.parameters())
    optimizer = torch.optim.AdamW([{'params': [p for p in params if p.dim() >= 2], 'weight_decay': 0.1},
                                   {'params': [p for p in params if p.dim() < 2], 'weight_decay': 0.0}])
    optimizer.load_state_dict(ckpt['optimizer'])
    return ckpt


def test_gpt2_recipe_checkpoint_loads_in_nanogpt_and_a_modern_one_here(shakespeare_char, tmp_path):
    # nanoGPT's own default is bias=False; GPT-2's recipe otherwise
    train(tmp_path / 'gpt2', '--max_iters=2', '--eval_interval=2', '--bias=False')
    ckpt = assert_nanogpt_loads(tmp_path / 'gpt2' / 'ckpt.pt')
    assert set(ckpt['model_args']) == {f.name for f in fields(NanoGPTConfig)}
    # a modern-recipe checkpoint names the switches that differ from GPT-2 (rotary_base is at its default) and
    # samples here
    train(tmp_path / 'modern', '--max_iters=2', '--eval_interval=2', *MODERN)
    args = load_checkpoint(str(tmp_path / 'modern' / 'ckpt.pt'))['model_args']
    assert set(args) == {f.name for f in fields(NanoGPTConfig)} | {
        'rotary', 'qk_norm', 'rmsnorm', 'relu_squared', 'tie_embeddings', 'logit_softcap', 'zero_init_proj',
        'embedding_norm'}, args
    proc = run_script('sample.py', f'--out_dir={tmp_path / "modern"}', '--num_samples=1', '--max_new_tokens=5',
                      '--device=cpu', '--dtype=float32', '--compile=False')
    assert proc.stdout.count('---------------') == 1


def test_nanogpt_style_checkpoint_resumes(shakespeare_char, tmp_path):
    # a checkpoint as nanoGPT writes it after torch.compile: '_orig_mod.' keys, no scaler, tokenizer or command
    out = tmp_path / 'out'
    train(out, '--max_iters=4', '--eval_interval=4', '--always_save_checkpoint=True')
    ckpt = torch.load(out / 'ckpt.pt', weights_only=True)
    ckpt['model'] = {'_orig_mod.' + k: v for k, v in ckpt['model'].items()}
    del ckpt['scaler'], ckpt['tokenizer'], ckpt['command'], ckpt['best_iter']
    torch.save(ckpt, out / 'ckpt.pt')
    proc = train(out, '--max_iters=6', '--eval_interval=2', '--init_from=resume')
    assert 'step 6:' in proc.stdout
    assert_nanogpt_loads(out / 'ckpt.pt')  # and nanoGPT can take it back
    ckpt = torch.load(out / 'ckpt.pt', weights_only=True)  # and sample.py reads the nanoGPT-style file too
    ckpt['model'] = {'_orig_mod.' + k: v for k, v in ckpt['model'].items()}
    torch.save(ckpt, out / 'ckpt.pt')
    proc = run_script('sample.py', f'--out_dir={out}', '--num_samples=1', '--max_new_tokens=20', '--device=cpu')
    assert proc.stdout.count('---------------') == 1


def test_bad_input_is_one_clear_line(shakespeare_char, tmp_path):
    out = tmp_path / 'out'
    assert_one_line_error(train(out, '--batch_sise=4', check=False), "unknown config key 'batch_sise'", 'batch_size')
    assert_one_line_error(train(out, '--max_iters=ten', check=False), "'max_iters'", 'int')
    assert_one_line_error(train(out, 'no_such_config', check=False), "no config file 'no_such_config'")
    assert_one_line_error(train(out, '--dataset=no_such_dataset', check=False), 'train.bin not found', 'prepare.py')
    assert_one_line_error(train(out, '--init_from=resume', check=False), 'no checkpoint at', 'python train.py')
    os.makedirs(out, exist_ok=True)
    (out / 'ckpt.pt').write_bytes(b'PK\x03\x04 this is not a checkpoint')
    assert_one_line_error(train(out, '--init_from=resume', check=False), 'corrupt or truncated')
    assert_one_line_error(train(tmp_path / 'ft', '--init_from=gpt3', check=False), "init_from='gpt3'")
    train(out, '--max_iters=2', '--eval_interval=2', '--always_save_checkpoint=True',  # an AdamW run, then Muon
          '--overwrite=True')  # over the corrupt file
    assert_one_line_error(train(out, '--init_from=resume', '--optimizer=muon', check=False),
                          "trained with optimizer='adamw'", '--optimizer=adamw')
    # a GPT-2 hub name with no network (conftest sets HF_HUB_OFFLINE) names the local alternative
    assert_one_line_error(train(tmp_path / 'ft', '--init_from=gpt2', check=False), "could not load 'gpt2'",
                          'local Hugging Face GPT-2 directory')
    # DDP with an accumulation count the world size does not divide
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2',
                           'train.py', '--dataset=shakespeare_char', f'--out_dir={out}', *TINY,
                           '--gradient_accumulation_steps=3'], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=script_env())
    assert proc.returncode != 0
    assert 'error: gradient_accumulation_steps (3)' in proc.stderr and 'divisible' in proc.stderr


def test_divergence_stops_and_keeps_the_last_good_checkpoint(shakespeare_char, tmp_path):
    out = tmp_path / 'out'
    train(out, '--max_iters=4', '--eval_interval=4', '--always_save_checkpoint=True')
    before = (out / 'ckpt.pt').read_bytes()
    proc = train(out, '--init_from=resume', '--max_iters=40', '--learning_rate=1e9', '--decay_lr=False',
                 '--grad_clip=0.0', '--eval_interval=4', check=False)
    assert_one_line_error(proc, 'training diverged', 'ckpt.pt (iter 4) is kept', '--init_from=resume')
    assert (out / 'ckpt.pt').read_bytes() == before


def test_mask_file_counts_only_answers_whose_prompt_is_in_the_window(tmp_path):
    tokens = np.arange(100, dtype=np.uint16) % 7
    tokens.tofile(tmp_path / 'train.bin')
    mask = (np.arange(100) % 5 >= 3).astype(np.uint8)  # examples of 5 tokens: a prompt of 3, an answer of 2
    mask.tofile(tmp_path / 'train_mask.bin')
    offsets = np.array([0, 10, 52, 88])  # 52 and 88 cut a prompt: that example's answer cannot be known
    x, y = dataloader.read_windows(str(tmp_path), 'train', offsets, 8, 7)
    counted = 0
    for row, start in enumerate(offsets):
        for t in range(8):
            target_pos = start + t + 1
            whole = target_pos // 5 * 5 >= start  # the example's first token is in the window
            assert x[row, t] == tokens[start + t]
            assert y[row, t] == (tokens[target_pos] if mask[target_pos] and whole else -1)
            counted += y[row, t] != -1
    assert y[2].tolist() == [-1] * 5 + [tokens[58], tokens[59], -1]  # 53, 54 answer the prompt 50-52, cut at 52
    assert counted == 3 + 3 + 2 + 2
    assert dataloader.has_answer_masks(str(tmp_path))  # so the loss reads lm_head on the answers only
    assert not dataloader.has_answer_masks(dataloader.dataset_dir('shakespeare_char'))
    mask[:50].tofile(tmp_path / 'val_mask.bin')  # a mask that does not fit its tokens is refused
    tokens.tofile(tmp_path / 'val.bin')
    with pytest.raises(UserError, match='val_mask.bin has 50 bytes'):
        dataloader.check_dataset(str(tmp_path), 8)


def test_activation_checkpointing_gives_the_same_weights(shakespeare_char, tmp_path):
    # the backward recomputes each block from its input, with the RNG state checkpoint saved for it, so the
    # dropout masks and every float operation are the same: bitwise equal weights on CPU fp32
    common = ['--max_iters=10', '--eval_interval=10', '--dropout=0.1', '--always_save_checkpoint=True']
    train(tmp_path / 'plain', *common)
    train(tmp_path / 'recomputed', *common, '--activation_checkpointing=True')
    assert_same_weights(tmp_path / 'plain' / 'ckpt.pt', tmp_path / 'recomputed' / 'ckpt.pt', atol=0.0)


def test_ddp_resume_with_dropout_is_exact(shakespeare_char, tmp_path):
    # every rank's dropout masks come from (seed, rank, step): 4 steps and a resume to 8 equal 8 uninterrupted
    # (a restored RNG state could only be rank 0's, which would give rank 1 rank 0's masks after the resume)
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2', 'train.py']
    def ddp(out, *args):
        proc = subprocess.run(torchrun + ['--dataset=shakespeare_char', f'--out_dir={out}', *TINY, '--dropout=0.1',
                                          '--gradient_accumulation_steps=2', '--eval_interval=4', '--eval_iters=2',
                                          '--always_save_checkpoint=True', *args],
                              cwd=REPO, capture_output=True, text=True, timeout=600, env=script_env())
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    ddp(tmp_path / 'full', '--max_iters=8')
    ddp(tmp_path / 'part', '--max_iters=4')
    ddp(tmp_path / 'part', '--max_iters=8', '--init_from=resume')
    assert_same_weights(tmp_path / 'full' / 'ckpt.pt', tmp_path / 'part' / 'ckpt.pt', atol=0.0)


def test_the_gpt2_config_starts_with_only_openwebtext_prepared(tmp_path):
    """config/train_gpt2.py asks for HellaSwag at each eval: on a machine with only OpenWebText-format data (uint16
    GPT-2 tokens, no meta.pkl) it still trains, and says in one line how to get HellaSwag where it is missing."""
    owt = tmp_path / 'owt'
    owt.mkdir()
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        rng.integers(0, 50257, size=4096, dtype=np.uint16).tofile(owt / f'{split}.bin')
    out = run_script('train.py', 'config/train_gpt2.py', f'--dataset={owt}', f'--out_dir={tmp_path / "out"}',
                     '--device=cpu', '--dtype=float32', '--compile=False', '--n_layer=1', '--n_head=2', '--n_embd=32',
                     '--block_size=64', '--batch_size=2', '--gradient_accumulation_steps=1', '--max_iters=1',
                     '--eval_iters=1', '--log_interval=1').stdout
    assert 'iter 1: loss' in out
    if os.path.isfile(os.path.join(REPO, 'data', 'hellaswag', 'val.jsonl')):  # this tree has it: it is scored
        assert 'hellaswag acc_norm' in out
    else:
        notes = [line for line in out.splitlines() if 'HellaSwag' in line]
        assert notes == ["HellaSwag is not scored: " + os.path.join(REPO, 'data', 'hellaswag', 'val.jsonl') +
                         " not found (`python data/hellaswag/prepare.py` writes it)"], out


def test_a_new_run_over_a_trained_checkpoint_is_refused(shakespeare_char, tmp_path):
    out = tmp_path / 'out'
    train(out, '--max_iters=6', '--eval_interval=6')
    before, log = (out / 'ckpt.pt').read_bytes(), (out / 'log.jsonl').read_bytes()
    # the same command again, or a finetune from another run, would replace iter 6 with a less trained model
    for args in ([], [f'--init_from={out}']):
        proc = train(out, '--max_iters=2', '--eval_interval=2', *args, check=False)
        assert_one_line_error(proc, f'{out}/ckpt.pt holds a trained model', '--init_from=resume', 'a new --out_dir')
        assert 'Initializing' not in proc.stdout and 'step 0' not in proc.stdout
    assert (out / 'ckpt.pt').read_bytes() == before and (out / 'log.jsonl').read_bytes() == log
    # an evaluation writes no checkpoint; --overwrite=True is the user asking for the replacement
    train(out, '--eval_only=True')
    train(out, '--max_iters=2', '--eval_interval=2', '--overwrite=True')
    assert load_checkpoint(str(out / 'ckpt.pt'))['iter_num'] == 2 and [e['iter'] for e in evals(out)] == [0, 2]


def test_a_shape_setting_that_contradicts_the_checkpoint_is_refused(shakespeare_char, tmp_path):
    out = tmp_path / 'out'
    train(out, '--max_iters=4', '--eval_interval=4')
    before = (out / 'ckpt.pt').read_bytes()
    proc = train(out, '--init_from=resume', '--max_iters=8', '--n_layer=4', '--n_embd=64', check=False)
    assert_one_line_error(proc, f'{out}/ckpt.pt has n_layer=2, n_embd=32', 'n_layer=4 (from --n_layer=4)',
                          'n_embd=64 (from --n_embd=64)', "keeps its checkpoint's shape")
    config = tmp_path / 'bigger.py'
    config.write_text('bias = True\nrotary = True\n')
    proc = run_script('train.py', str(config), '--dataset=shakespeare_char', f'--out_dir={out}', *TINY,
                      '--init_from=resume', '--max_iters=8', check=False)
    assert_one_line_error(proc, 'bias=False, rotary=False', f'bias=True (from {config})',
                          f'rotary=True (from {config})')
    proc = train(out, '--init_from=resume', '--max_iters=8', '--block_size=16', check=False)  # no cropping on resume
    assert_one_line_error(proc, 'block_size=32', 'block_size=16 (from --block_size=16)')
    assert (out / 'ckpt.pt').read_bytes() == before
    # settings left at their defaults (12 x 768, block 1024 here) are the checkpoint's, and its record says so
    run_script('train.py', '--dataset=shakespeare_char', f'--out_dir={out}', '--init_from=resume', '--device=cpu',
               '--dtype=float32', '--compile=False', '--batch_size=4', '--gradient_accumulation_steps=1',
               '--eval_iters=2', '--max_iters=6', '--eval_interval=6')
    ckpt = load_checkpoint(str(out / 'ckpt.pt'))
    assert ckpt['iter_num'] == 6
    shape = ('n_layer', 'n_head', 'n_embd', 'block_size', 'bias')
    assert all(ckpt['config'][k] == ckpt['model_args'][k] for k in shape)
    # a new run from the checkpoint may still crop its context
    train(tmp_path / 'ft', f'--init_from={out}', '--block_size=16', '--max_iters=2', '--eval_interval=2')
    ft = load_checkpoint(str(tmp_path / 'ft' / 'ckpt.pt'))
    assert ft['model_args']['block_size'] == ft['config']['block_size'] == 16


def test_a_resume_that_fails_before_its_first_record_leaves_the_log_alone(shakespeare_char, tmp_path):
    # ckpt.pt at iter 4 beside a log that goes on to iter 8 (as always_save_checkpoint=False leaves them); the resume
    # diverges before its first eval: the records from iter 4 on must not be dropped before one replaces them
    out = tmp_path / 'out'
    train(out, '--max_iters=4', '--eval_interval=2', '--always_save_checkpoint=True')
    at_4 = (out / 'ckpt.pt').read_bytes()
    train(out, '--init_from=resume', '--max_iters=8', '--eval_interval=2', '--always_save_checkpoint=True')
    (out / 'ckpt.pt').write_bytes(at_4)
    log = (out / 'log.jsonl').read_bytes()
    assert [e['iter'] for e in evals(out)] == [0, 2, 4, 6, 8]
    proc = train(out, '--init_from=resume', '--max_iters=1000000', '--eval_interval=1000000', '--learning_rate=1e9',
                 '--decay_lr=False', '--grad_clip=0.0', check=False)
    assert_one_line_error(proc, 'training diverged', 'ckpt.pt (iter 4) is kept')
    assert (out / 'log.jsonl').read_bytes() == log and (out / 'ckpt.pt').read_bytes() == at_4
    # a resume that writes its first record drops the replayed ones with it: one curve
    train(out, '--init_from=resume', '--max_iters=6', '--eval_interval=2')
    assert [e['iter'] for e in evals(out)] == [0, 2, 4, 6]
