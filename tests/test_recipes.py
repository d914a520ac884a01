"""The laptop recipes the README names run as it says: a few steps each, on small stand-ins for their data."""
import os

import pytest
import torch

from conftest import REPO, run_script

transformers = pytest.importorskip('transformers')

SHORT = ['--max_iters=2', '--eval_interval=2', '--eval_iters=1', '--dtype=float32']


def prepare_text(tmp_path, *args):
    """Two of Shakespeare's plays' worth of text through data/text/prepare.py, as a user's own book."""
    with open(os.path.join(REPO, 'data', 'shakespeare_char', 'input.txt')) as f:
        (tmp_path / 'mybook.txt').write_text(f.read()[:100_000])
    run_script('data/text/prepare.py', f'--input={tmp_path / "mybook.txt"}', f'--out_dir={tmp_path / "mybook"}', *args)
    return str(tmp_path / 'mybook')


def test_own_text_laptop_config(tmp_path):
    dataset = prepare_text(tmp_path)
    proc = run_script('train.py', 'config/train_text_cpu.py', f'--dataset={dataset}', f'--out_dir={tmp_path / "out"}',
                      *SHORT)
    assert 'step 2: train loss' in proc.stdout
    ckpt = torch.load(tmp_path / 'out' / 'ckpt.pt', weights_only=True)
    assert ckpt['model_args']['block_size'] == 128 and ckpt['model_args']['n_layer'] == 4


def test_laptop_finetune_config(tmp_path):
    # GPT-2's shape shrunk (a local Hugging Face directory stands in for the hub's gpt2): the config's settings,
    # block 256 included, must work from pretrained weights on a GPT-2 BPE dataset
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32))
    hf.save_pretrained(tmp_path / 'gpt2-tiny')
    dataset = prepare_text(tmp_path)
    proc = run_script('train.py', 'config/finetune_shakespeare_cpu.py', f'--init_from={tmp_path / "gpt2-tiny"}',
                      f'--dataset={dataset}', f'--out_dir={tmp_path / "out"}', *SHORT)
    assert 'step 2: train loss' in proc.stdout
    ckpt = torch.load(tmp_path / 'out' / 'ckpt.pt', weights_only=True)
    assert ckpt['config']['block_size'] == 256 and ckpt['config']['gradient_accumulation_steps'] == 4
    assert ckpt['model_args']['gelu'] == 'tanh'  # GPT-2's GELU, kept with its weights


def test_fast_laptop_config(shakespeare_char, tmp_path):
    # the modern recipe's quickstart: Muon and every modern switch on the quickstart's data, in batches of 24
    proc = run_script('train.py', 'config/train_shakespeare_char_cpu_fast.py', f'--out_dir={tmp_path / "out"}', *SHORT)
    assert 'step 2: train loss' in proc.stdout and 'Muon for 16 block matrices' in proc.stdout
    ckpt = torch.load(tmp_path / 'out' / 'ckpt.pt', weights_only=True)
    assert ckpt['config']['batch_size'] == 24 and ckpt['model_args']['rotary'] and ckpt['model_args']['relu_squared']
