"""sample.py as a user runs it, and the README's quickstart path, shortened."""
import json

import pytest
import torch

from checkpoint import load_model, tokenizer_for
from conftest import assert_one_line_error, run_script
from tokenizer import Tokenizer, for_dataset


def samples(stdout):
    """The text of each sample sample.py printed (samples end with a line of dashes)."""
    return [s.strip('\n') for s in stdout.split('---------------')[:-1]]


def test_quickstart_trains_and_samples_shakespeare(quickstart_run):
    with open(quickstart_run / 'log.jsonl') as f:
        log = [json.loads(line) for line in f]
    assert log[0]['val_loss'] > 4.0 and log[-1]['val_loss'] < 2.6, log
    proc = run_script('sample.py', f'--out_dir={quickstart_run}', '--num_samples=2', '--max_new_tokens=300')
    texts = samples(proc.stdout.split('number of parameters')[-1].split('\n', 1)[1])
    assert len(texts) == 2
    vocab = set(for_dataset('shakespeare_char').meta['stoi'])
    for text in texts:
        assert len(text) > 250 and set(text) <= vocab
        # English-like statistics (the untrained model's uniform choice over 65 characters gives ~1.5%
        # spaces and ~20% upper case): ~1 space every 4-8 characters, mostly lower-case letters
        spaces = text.count(' ') / len(text)
        lower = sum(c.islower() for c in text) / len(text)
        assert 0.1 < spaces < 0.3 and lower > 0.5, (spaces, lower, text)


def test_greedy_sampling_is_repeatable_and_decodes_with_the_char_vocab(quickstart_run):
    args = ('sample.py', f'--out_dir={quickstart_run}', '--temperature=0', '--num_samples=1', '--max_new_tokens=80',
            '--start=ROMEO:', '--dtype=float32')
    first, second = run_script(*args).stdout, run_script(*args).stdout
    assert first == second
    model, ckpt = load_model('resume', str(quickstart_run))
    tok = tokenizer_for(ckpt)
    assert tok.name == 'char' and tok.vocab_size == 65
    ids = torch.tensor([tok.encode('ROMEO:')])
    expected = tok.decode(model.eval().generate(ids, 80, temperature=0)[0].tolist())
    assert samples(first.split('number of parameters')[-1].split('\n', 1)[1]) == [expected]


def test_sampling_a_local_gpt2_directory_decodes_bpe(tmp_path):
    transformers = pytest.importorskip('transformers')
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_head=2, n_embd=32, n_positions=64))
    hf.save_pretrained(tmp_path)
    proc = run_script('sample.py', f'--init_from={tmp_path}', '--temperature=0', '--num_samples=1',
                      '--max_new_tokens=30', '--start=Hello world', '--dtype=float32', '--device=cpu')
    tok = Tokenizer.gpt2()
    model, _ = load_model(str(tmp_path))
    out = model.eval().generate(torch.tensor([tok.encode('Hello world')]), 30, temperature=0)[0].tolist()
    assert samples(proc.stdout.split('number of parameters')[-1].split('\n', 1)[1]) == [tok.decode(out)]


def test_sample_bad_input(quickstart_run, tmp_path):
    proc = run_script('sample.py', f'--out_dir={tmp_path}', check=False)
    assert_one_line_error(proc, 'no checkpoint at', 'python train.py')
    proc = run_script('sample.py', f'--out_dir={quickstart_run}', '--start=' + 'a' * 65, check=False)
    assert_one_line_error(proc, 'the prompt is 65 tokens', 'context is 64')
    proc = run_script('sample.py', f'--out_dir={quickstart_run}', '--start=', check=False)
    assert_one_line_error(proc, 'the prompt is empty')
    # a character outside the vocabulary is read as a space, as the exported tokenizer reads it, and said so
    proc = run_script('sample.py', f'--out_dir={quickstart_run}', '--start=\u20ac', '--num_samples=1',
                      '--max_new_tokens=5', '--device=cpu', '--dtype=float32')
    assert "note: '€' of the prompt not in the model's 65-character vocabulary, read as ' '" in proc.stderr
    assert proc.stdout.split('number of parameters')[-1].split('\n', 1)[1].startswith('€')


def test_compile_compiles_what_generation_runs(quickstart_run):
    # torch.compile(model) would leave generate_stream calling the plain forward: dynamo would trace nothing.
    # TORCH_LOGS=dynamo names each function it traces; generation runs two graphs of GPT.forward, the prompt's
    # prefill and the one-token step (its cache length dynamic), and they give the eager model's greedy text.
    args = ('sample.py', f'--out_dir={quickstart_run}', '--temperature=0', '--num_samples=1', '--max_new_tokens=12',
            '--start=ROMEO:', '--dtype=float32', '--device=cpu')
    eager = run_script(*args).stdout
    compiled = run_script(*args, '--compile=True', env={'TORCH_LOGS': 'dynamo'})
    traced = [line for line in compiled.stderr.splitlines() if 'torchdynamo start tracing forward' in line]
    assert len(traced) == 2 and all('model.py' in line for line in traced), compiled.stderr[-3000:]
    assert samples(compiled.stdout.split('number of parameters')[-1].split('\n', 1)[1]) == \
        samples(eager.split('number of parameters')[-1].split('\n', 1)[1])
