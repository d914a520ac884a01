"""export.py and self-contained checkpoints: a trained char model and a GPT-2-BPE model go out as Hugging Face
directories that transformers' Auto* classes load and that generate and tokenize exactly as this repo does,
and come back in through init_from; a lone ckpt.pt samples and exports; bad input is one line."""
import glob
import json
import os
import shlex
import shutil
import subprocess

import numpy as np
import pytest
import torch

from conftest import REPO, assert_one_line_error, run_script, script_env
from tokenizer import Tokenizer, for_dataset

transformers = pytest.importorskip('transformers')

TINY = ['--device=cpu', '--dtype=float32', '--compile=False', '--n_layer=2', '--n_head=2', '--n_embd=32',
        '--gradient_accumulation_steps=1', '--block_size=64', '--batch_size=8', '--eval_iters=2', '--log_interval=50',
        '--learning_rate=1e-2', '--min_lr=1e-3', '--warmup_iters=5']


def samples(stdout):
    """The exact text of each sample sample.py printed after the model's parameter count: each is followed by
    one newline and a line of 15 dashes."""
    chunks = stdout.split('number of parameters')[-1].split('\n', 1)[1].split('-' * 15 + '\n')[:-1]
    return [c[:-1] for c in chunks]


@pytest.fixture(scope='module')
def char_data(tmp_path_factory):
    """tiny Shakespeare's character dataset, prepared in a folder of the test's own (a test hides it)."""
    data = tmp_path_factory.mktemp('shakespeare_char')
    run_script('data/shakespeare_char/prepare.py', f'--out_dir={data}')
    return data


@pytest.fixture(scope='module')
def char_ckpt(char_data, tmp_path_factory):
    out = tmp_path_factory.mktemp('char')
    run_script('train.py', f'--dataset={char_data}', f'--out_dir={out}', *TINY, '--max_iters=200',
               '--lr_decay_iters=200', '--eval_interval=200')
    return out


@pytest.fixture(scope='module')
def bpe_ckpt(tmp_path_factory):
    data = tmp_path_factory.mktemp('shakespeare_bpe')
    run_script('data/shakespeare/prepare.py', f'--out_dir={data}')
    out = tmp_path_factory.mktemp('bpe')
    run_script('train.py', f'--dataset={data}', f'--out_dir={out}', *TINY, '--max_iters=10', '--lr_decay_iters=10',
               '--eval_interval=10')
    return out


@pytest.fixture(scope='module')
def exported(char_ckpt, bpe_ckpt, tmp_path_factory):
    """{'char': dir, 'bpe': dir}: each checkpoint exported once by export.py."""
    dirs = {}
    for kind, ckpt_dir in (('char', char_ckpt), ('bpe', bpe_ckpt)):
        parent = tmp_path_factory.mktemp(f'export_{kind}')
        run_script('export.py', f'--out_dir={ckpt_dir}', f'--hf_dir={parent / "hf"}')
        assert not [f for f in os.listdir(parent) if f != 'hf']  # no temporary directory left behind
        dirs[kind] = parent / 'hf'
    return dirs


def hf_greedy(hf_dir, prompt, new_tokens):
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    ids = tok(prompt, return_tensors='pt').input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=new_tokens, do_sample=False)
    return tok.decode(out[0])


@pytest.mark.parametrize('kind', ['char', 'bpe'])
def test_export_generates_what_sample_py_generates(kind, char_ckpt, bpe_ckpt, exported):
    ckpt_dir, hf_dir = (char_ckpt if kind == 'char' else bpe_ckpt), exported[kind]
    files = set(os.listdir(hf_dir))
    assert {'config.json', 'model.safetensors', 'generation_config.json', 'tokenizer.json', 'README.md'} <= files
    if kind == 'bpe':
        assert {'vocab.json', 'merges.txt'} <= files
    prompt, new = 'ROMEO:', 40  # 6 + 40 characters (or ~42 BPE tokens) fit the 64-token context
    ours = samples(run_script('sample.py', f'--out_dir={ckpt_dir}', f'--start={prompt}', '--temperature=0',
                              '--num_samples=1', f'--max_new_tokens={new}', '--device=cpu',
                              '--dtype=float32').stdout)  # transformers' precision
    theirs = hf_greedy(str(hf_dir), prompt, new)
    assert ours == [theirs]
    from checkpoint import load_model
    model = load_model('resume', str(ckpt_dir))[0].eval()
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    idx = torch.randint(0, hf_model.config.vocab_size, (2, 64))
    with torch.no_grad():
        ref, got = hf_model(idx).logits, model(idx, all_logits=True)[0][..., :hf_model.config.vocab_size]
    assert (ref - got).abs().max().item() < 1e-4  # every position: an undertrained model's greedy text is dull
    pipe = transformers.pipeline('text-generation', model=str(hf_dir))
    assert pipe(prompt, max_new_tokens=new, do_sample=False)[0]['generated_text'] == theirs
    card = (hf_dir / 'README.md').read_text()
    assert 'iterations: ' in card and 'best val loss' in card and 'python export.py' in card


def test_bpe_export_tokenizes_tiny_shakespeare_like_tokenizer_py(exported):
    hf_tok = transformers.AutoTokenizer.from_pretrained(exported['bpe'])
    text = open(os.path.join(REPO, 'data', 'shakespeare_char', 'input.txt'), encoding='utf-8').read()
    ids = hf_tok(text).input_ids
    assert len(ids) == 338_025 and ids == Tokenizer.gpt2().encode(text)
    assert hf_tok.decode(ids) == text
    odd = "  ünïcödé 🤖 can't we'll\r\n\t  x  "
    assert hf_tok(odd).input_ids == Tokenizer.gpt2().encode(odd)
    assert hf_tok.eos_token_id == 50256


def test_char_export_tokenizes_like_the_prepared_bins(char_data, exported):
    hf_tok = transformers.AutoTokenizer.from_pretrained(exported['char'])
    bins = np.concatenate([np.fromfile(char_data / f'{s}.bin', dtype=np.uint16) for s in ('train', 'val')])
    text = open(os.path.join(REPO, 'data', 'shakespeare_char', 'input.txt'), encoding='utf-8').read()
    ids = hf_tok(text).input_ids
    assert len(ids) == len(bins) == 1_115_394 and ids == bins.tolist()
    assert hf_tok.decode(ids) == text


def test_exported_dir_comes_back_through_init_from(char_ckpt, char_data, exported, tmp_path):
    from checkpoint import load_model, tokenizer_for
    model, ckpt = load_model('resume', str(char_ckpt))
    back, none = load_model(str(exported['char']))
    assert none is None
    theirs = back.state_dict()
    for key, w in model.state_dict().items():
        assert torch.equal(w, theirs[key]), key  # bitwise (a bias-free model comes back with zero biases)
    assert tokenizer_for(None, str(exported['char'])).same_as(tokenizer_for(ckpt))
    # and a user finetunes it: train.py from the exported directory on the same char dataset
    run_script('train.py', f'--dataset={char_data}', f'--init_from={exported["char"]}', f'--out_dir={tmp_path / "ft"}',
               *TINY, '--max_iters=5', '--lr_decay_iters=5', '--eval_interval=5')
    assert tokenizer_for(load_model('resume', str(tmp_path / 'ft'))[1]).same_as(tokenizer_for(ckpt))


def test_a_lone_checkpoint_samples_and_exports(char_ckpt, char_data, tmp_path):
    lone = tmp_path / 'lone'
    lone.mkdir()
    shutil.copy(char_ckpt / 'ckpt.pt', lone / 'ckpt.pt')
    elsewhere = tmp_path / 'cwd'  # no data/ folder: the vocabulary must come from ckpt.pt itself
    elsewhere.mkdir()
    hidden = tmp_path / 'hidden'
    os.replace(char_data, hidden)  # the dataset it was trained on is gone too
    try:
        out = run_script(os.path.join(REPO, 'sample.py'), f'--out_dir={lone}', '--start=ROMEO:', '--temperature=0',
                         '--num_samples=1', '--max_new_tokens=20', '--device=cpu', '--dtype=float32',
                         cwd=elsewhere).stdout
        run_script(os.path.join(REPO, 'export.py'), f'--out_dir={lone}', f'--hf_dir={tmp_path / "hf"}', cwd=elsewhere)
    finally:
        os.replace(hidden, char_data)
    assert samples(out)[0].startswith('ROMEO:') and len(samples(out)[0]) == 26
    assert hf_greedy(str(tmp_path / 'hf'), 'ROMEO:', 20) == samples(out)[0]
    recorded = torch.load(lone / 'ckpt.pt', weights_only=True)['tokenizer']
    assert for_dataset(str(char_data)).same_as(Tokenizer.from_state(recorded))


def test_export_bad_input(char_ckpt, tmp_path):
    proc = run_script('export.py', f'--out_dir={tmp_path / "none"}', f'--hf_dir={tmp_path / "hf"}', check=False)
    assert_one_line_error(proc, 'no checkpoint at')
    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'ckpt.pt').write_bytes(b'not a checkpoint')
    assert_one_line_error(run_script('export.py', f'--out_dir={bad}', f'--hf_dir={tmp_path / "hf"}', check=False),
                          'cannot read checkpoint', 'corrupt or truncated')
    full = tmp_path / 'full'
    full.mkdir()
    (full / 'keep.txt').write_text('mine')
    proc = run_script('export.py', f'--out_dir={char_ckpt}', f'--hf_dir={full}', check=False)
    assert_one_line_error(proc, 'exists and is not empty', '--overwrite=True')
    assert os.listdir(full) == ['keep.txt']  # untouched
    run_script('export.py', f'--out_dir={char_ckpt}', f'--hf_dir={full}', '--overwrite=True')
    assert 'keep.txt' not in os.listdir(full) and 'model.safetensors' in os.listdir(full)
    a_file = tmp_path / 'file'
    a_file.write_text('x')
    proc = run_script('export.py', f'--out_dir={char_ckpt}', f'--hf_dir={a_file / "hf"}', check=False)
    assert_one_line_error(proc, 'not a writable directory')
    assert_one_line_error(run_script('export.py', f'--out_dir={char_ckpt}', check=False), '--hf_dir=')
    assert not [f for f in os.listdir(tmp_path) if f.startswith('.')]


def test_resume_refuses_a_dataset_whose_vocabulary_changed(tmp_path):
    text = open(os.path.join(REPO, 'data', 'shakespeare_char', 'input.txt'), encoding='utf-8').read()
    (tmp_path / 'a.txt').write_text(text[:200_000], encoding='utf-8')
    (tmp_path / 'b.txt').write_text(text[:200_000].upper() + 'xyz 0123456789', encoding='utf-8')  # other characters
    data, out = tmp_path / 'data', tmp_path / 'out'
    run_script('data/text/prepare.py', f'--input={tmp_path / "a.txt"}', f'--out_dir={data}', '--tokenizer=char')
    run_script('train.py', f'--dataset={data}', f'--out_dir={out}', *TINY, '--max_iters=4', '--lr_decay_iters=4',
               '--eval_interval=4')
    run_script('data/text/prepare.py', f'--input={tmp_path / "b.txt"}', f'--out_dir={data}', '--tokenizer=char')
    before = (out / 'ckpt.pt').read_bytes()
    proc = run_script('train.py', f'--dataset={data}', f'--out_dir={out}', '--init_from=resume', *TINY,
                      '--max_iters=8', '--lr_decay_iters=8', '--eval_interval=4', check=False)
    assert_one_line_error(proc, 'was trained with', 'would mean other text')
    assert (out / 'ckpt.pt').read_bytes() == before  # the checkpoint is untouched


def test_char_export_reads_an_unknown_character_as_tokenizer_py_and_sample_py_do(char_ckpt, exported):
    # 'é' is not among tiny Shakespeare's 65 characters: all three read it as a space (the vocabulary's unknown_char)
    tok = Tokenizer.from_state(torch.load(char_ckpt / 'ckpt.pt', weights_only=True)['tokenizer'])
    hf_tok = transformers.AutoTokenizer.from_pretrained(exported['char'])
    assert tok.unknown_char == ' ' and tok.encode('café!') == tok.encode('caf !') == hf_tok('café!').input_ids
    proc = run_script('sample.py', f'--out_dir={char_ckpt}', '--start=café', '--temperature=0', '--num_samples=1',
                      '--max_new_tokens=30', '--device=cpu', '--dtype=float32')
    assert "note: 'é' of the prompt not in the model's 65-character vocabulary, read as ' '" in proc.stderr
    pipe = transformers.pipeline('text-generation', model=str(exported['char']))
    assert samples(proc.stdout) == [pipe('café', max_new_tokens=30, do_sample=False)[0]['generated_text']]
    with pytest.raises(Exception, match='not in this 65-character vocabulary'):  # text that must stay exact
        tok.encode('café', strict=True)


# lm-evaluation-harness on a local multiple-choice task, exactly as the README prints it (a test requirement:
# requirements-test.txt); the task file is eval_tasks.py's format, so the two score the same examples
README_LM_EVAL = ('lm_eval --model hf --model_args pretrained=hf-shakespeare-char --tasks my_choices '
                  '--include_path my_tasks --output_path lm-eval-results --log_samples')
README_TASK_YAML = """task: my_choices
dataset_path: json
dataset_kwargs: {data_files: {validation: my_tasks/my_choices.jsonl}}
validation_split: validation
output_type: multiple_choice
doc_to_text: '{{context}}'
doc_to_choice: '{{endings}}'
doc_to_target: '{{label}}'
target_delimiter: ''
metric_list: [{metric: acc}, {metric: acc_norm}]
"""


def shakespeare_choices(n=8):
    """n examples from tiny Shakespeare's lines: a line's start, its own rest or another line's. Each ending starts
    with a space, so GPT-2 BPE splits context + ending where the two meet (as lm-eval's tokenization assumes)."""
    text = open(os.path.join(REPO, 'data', 'shakespeare_char', 'input.txt'), encoding='utf-8').read()
    lines = [line for line in text.splitlines() if 30 <= len(line) <= 50 and line.count(' ') >= 4][:4 * n]
    cut = lambda line: line.rindex(' ', 0, len(line) // 2 + 1)
    return [{'context': lines[i][:cut(lines[i])],
             'endings': [lines[i][cut(lines[i]):], lines[i + 1][cut(lines[i + 1]):]][::1 - 2 * (i % 2)],
             'label': i % 2} for i in range(0, 2 * n, 2)]


@pytest.mark.parametrize('kind', ['char', 'bpe'])
def test_lm_eval_scores_an_export_as_eval_tasks_does(kind, char_ckpt, bpe_ckpt, exported, tmp_path):
    import eval_tasks
    from checkpoint import load_model, tokenizer_for
    assert README_LM_EVAL in open(os.path.join(REPO, 'README.md'), encoding='utf-8').read()
    assert README_TASK_YAML in open(os.path.join(REPO, 'README.md'), encoding='utf-8').read()
    (tmp_path / 'my_tasks').mkdir()
    (tmp_path / 'my_tasks' / 'my_choices.yaml').write_text(README_TASK_YAML)
    examples = shakespeare_choices()
    (tmp_path / 'my_tasks' / 'my_choices.jsonl').write_text(''.join(json.dumps(x) + '\n' for x in examples))
    os.symlink(exported[kind], tmp_path / 'hf-shakespeare-char')  # the README's name, for either export
    env = script_env({'HF_DATASETS_OFFLINE': '1', 'HF_DATASETS_CACHE': str(tmp_path / 'datasets-cache')})
    proc = subprocess.run(shlex.split(README_LM_EVAL), cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '|my_choices|' in proc.stdout.replace(' ', '')
    [samples_file] = glob.glob(str(tmp_path / 'lm-eval-results' / '*' / 'samples_my_choices_*.jsonl'))
    theirs = sorted((json.loads(line) for line in open(samples_file)), key=lambda r: r['doc_id'])
    assert [r['doc'] for r in theirs] == examples
    model, ckpt = load_model('resume', str(char_ckpt if kind == 'char' else bpe_ckpt))
    ours = eval_tasks.read_choices(str(tmp_path / 'my_tasks' / 'my_choices.jsonl'), tokenizer_for(ckpt), block_size=64)
    with torch.no_grad():
        ours = eval_tasks.ending_logprobs(model.eval(), ours, 'cpu', tokenizer_for(ckpt).vocab_size)  # (endings, 2)
    for r, o in zip(theirs, ours):
        got = [float(loglik) for loglik, _ in r['filtered_resps']]
        assert max(abs(g - w) for g, w in zip(got, o[:, 0].tolist())) < 1e-4, (got, o)
