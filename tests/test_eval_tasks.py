"""eval_tasks.py and data/hellaswag: multiple-choice scoring against a plain one-at-a-time reference (our GPT and
transformers' GPT-2), a learned task scored far above chance, torchrun giving the single-process counts, bits per
byte, train.py --eval_hellaswag, bad input, and the progress bar (on a terminal only)."""
import fcntl
import json
import math
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest
import torch
from torch.nn import functional as F

import dataloader
import eval_tasks
from checkpoint import load_model, make_checkpoint, new_model, save_checkpoint
from configurator import UserError
from conftest import REPO, assert_one_line_error, run_script, script_env
from data.tasks import write_choices
from tokenizer import Tokenizer

FIXTURE = f'{REPO}/tests/data/hellaswag_tiny.jsonl'  # 12 hand-written examples in HellaSwag's own format


@pytest.fixture(scope='module')
def hellaswag_tiny(tmp_path_factory):
    """The fixture through data/hellaswag/prepare.py --input=..., as a user would prepare the real file offline."""
    out = tmp_path_factory.mktemp('hellaswag')
    proc = run_script('data/hellaswag/prepare.py', f'--input={FIXTURE}', f'--out_dir={out}')
    assert 'wrote 12 examples' in proc.stdout
    return out / 'val.jsonl'


def reference_logprobs(logits_of, examples):
    """The plain way: one ending at a time, a full forward over context + ending, the ending's log-probabilities
    summed. logits_of(ids (1, T)) -> (1, T, V)."""
    out = []
    for context, endings, _ in examples:
        rows = []
        for ending in endings:
            ids = torch.tensor([context + ending])
            logp = F.log_softmax(logits_of(ids)[0].double(), dim=-1)
            rows.append(sum(logp[len(context) + j - 1, tok].item() for j, tok in enumerate(ending)))
        out.append(rows)
    return out


def assert_scorer_matches(model, examples, logits_of):
    with torch.no_grad():
        batched = eval_tasks.ending_logprobs(model.eval(), examples, 'cpu')  # every example in one forward
        expected = reference_logprobs(logits_of, examples)
    for got, want, (_, endings, _) in zip(batched, expected, examples):
        assert got[:, 1].tolist() == [len(e) for e in endings]
        assert max(abs(g - w) for g, w in zip(got[:, 0].tolist(), want)) < 1e-5, (got, want)
    # acc and acc_norm are the argmax of the reference's sums and means, whatever the batch size
    right = sum(max(range(len(w)), key=w.__getitem__) == label for w, (_, _, label) in zip(expected, examples))
    right_norm = sum(max(range(len(w)), key=lambda i: w[i] / len(endings[i])) == label
                     for w, (_, endings, label) in zip(expected, examples))
    for batch_size in (1, 5):
        scores = eval_tasks.score_choices(model, examples, batch_size=batch_size, ctx=torch.no_grad(), device='cpu')
        assert scores == {'examples': len(examples), 'acc': right / len(examples),
                          'acc_norm': right_norm / len(examples)}


def test_hellaswag_prepare_writes_the_repos_format(hellaswag_tiny):
    official = [json.loads(line) for line in open(FIXTURE)]
    ours = [json.loads(line) for line in open(hellaswag_tiny)]
    assert [x['context'] for x in ours] == [x['ctx'] for x in official]
    assert [x['endings'] for x in ours] == [[' ' + e for e in x['endings']] for x in official]
    assert [x['label'] for x in ours] == [x['label'] for x in official]


def test_scorer_matches_a_plain_reference_on_a_random_gpt(hellaswag_tiny):
    examples = eval_tasks.read_choices(str(hellaswag_tiny), Tokenizer.gpt2(), block_size=64)
    torch.manual_seed(0)
    model = new_model(n_layer=2, n_head=2, n_embd=32, block_size=64, vocab_size=50304, bias=True)
    assert_scorer_matches(model, examples, lambda ids: model(ids, all_logits=True)[0])


def test_scorer_matches_transformers_gpt2(hellaswag_tiny, tmp_path):
    transformers = pytest.importorskip('transformers')
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64)).eval()
    hf.save_pretrained(tmp_path)
    model, _ = load_model(str(tmp_path))
    examples = eval_tasks.read_choices(str(hellaswag_tiny), Tokenizer.gpt2(), block_size=64)
    assert_scorer_matches(model, examples, lambda ids: hf(ids).logits)


def test_a_learned_task_scores_far_above_chance_and_an_untrained_model_near_it(sort_run, tmp_path):
    data, out, held_out, choices = sort_run  # 4-way choices: chance is 0.25
    result = tmp_path / 'result.json'
    run_script('eval_tasks.py', f'--out_dir={out}', f'--task={choices}', f'--out_file={result}', '--device=cpu')
    scores = json.loads(result.read_text())
    assert scores['examples'] == len(held_out) == 182 and scores['acc'] > 0.9, scores
    # train.py --eval_hellaswag scored the same file: near chance at iter 0, untrained; at the end, the saved
    # model's score, as eval_tasks.py gives it
    log = [json.loads(line) for line in open(out / 'log.jsonl')]
    assert [r['iter'] for r in log] == [0, 400]
    assert 0.1 < log[0]['hellaswag_acc_norm'] < 0.45 and log[-1]['hellaswag_acc_norm'] == scores['acc_norm']
    # a random model of the same shape, saved as a checkpoint: near chance
    trained, checkpoint = load_model('resume', str(out))
    torch.manual_seed(1)
    untrained = new_model(**{**vars(trained.config)})
    save_checkpoint(make_checkpoint(untrained, torch.optim.SGD(untrained.parameters(), lr=0.0), 0, 9.9,
                                    checkpoint['config'], Tokenizer.from_state(checkpoint['tokenizer'])),
                    str(tmp_path / 'untrained' / 'ckpt.pt'))
    run_script('eval_tasks.py', f'--init_from={tmp_path / "untrained"}', f'--task={choices}', f'--out_file={result}',
               '--device=cpu')
    assert 0.1 < json.loads(result.read_text())['acc'] < 0.45


def test_torchrun_gives_the_single_process_counts(sort_run, tmp_path):
    _, out, held_out, _ = sort_run
    choices = write_choices(held_out[:101], tmp_path / 'odd.jsonl', seed=3)  # 101: an uneven split
    args = ['eval_tasks.py', f'--out_dir={out}', f'--task={choices}', '--device=cpu', '--batch_size=7']
    run_script(*args, f'--out_file={tmp_path / "one.json"}')
    torchrun = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node=2']
    proc = subprocess.run(torchrun + args + [f'--out_file={tmp_path / "two.json"}'], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env=script_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = (json.loads((tmp_path / f'{n}.json').read_text()) for n in ('one', 'two'))
    assert {k: one[k] for k in ('examples', 'acc', 'acc_norm')} == {k: two[k] for k in ('examples', 'acc', 'acc_norm')}
    assert one['examples'] == 101


def test_bits_per_byte_of_a_character_model(quickstart_run, shakespeare_char):
    # tiny Shakespeare is ASCII: one byte per character token, so bpb is the mean loss over ln 2 of the same
    # fixed val batches, computed here by a plain forward
    proc = run_script('eval_tasks.py', f'--out_dir={quickstart_run}', '--task=bpb', '--eval_iters=3',
                      '--batch_size=4', '--device=cpu', '--dtype=float32')
    model, _ = load_model('resume', str(quickstart_run))
    data_dir = dataloader.check_dataset(shakespeare_char, 64)
    with torch.no_grad():
        losses = [model.eval()(*map(torch.from_numpy, dataloader.eval_batch(data_dir, 'val', 1337, k, 4, 64, 65)))[1]
                  for k in range(3)]
    expected = torch.stack(losses).mean().item() / math.log(2)
    bpb = float(proc.stdout.split('bpb ')[1].split()[0])
    assert abs(bpb - expected) < 1e-4 and f'on {3 * 4 * 64:,} tokens ({3 * 4 * 64:,} bytes)' in proc.stdout


def test_token_bytes_of_gpt2_count_utf8_bytes_and_skip_end_of_text():
    tok = Tokenizer.gpt2()
    lengths = eval_tasks.token_bytes(tok, 50304)
    text = 'Ünïcödé text, and emoji 🙂 too'
    ids = tok.encode(text)
    assert lengths[ids].sum().item() == len(text.encode('utf-8'))  # some of these tokens are partial characters
    assert lengths[50256] == 0 and lengths[50257:].sum() == 0


def test_bad_input_is_one_line(sort_run, tmp_path):
    _, out, _, _ = sort_run
    score = lambda path: run_script('eval_tasks.py', f'--out_dir={out}', f'--task={path}', '--device=cpu', check=False)
    assert_one_line_error(score(tmp_path / 'none.jsonl'), 'no multiple-choice file', 'data/hellaswag/prepare.py')
    good = json.dumps({'context': '\n012=', 'endings': ['012\n', '120\n'], 'label': 0})
    (tmp_path / 'malformed.jsonl').write_text(good + '\n{"context": "\\n01=", "endings": [\n')
    assert_one_line_error(score(tmp_path / 'malformed.jsonl'), 'malformed.jsonl:2', 'not a JSON object')
    # HellaSwag's own file, not converted: the line says which script converts it
    assert_one_line_error(score(FIXTURE), 'hellaswag_tiny.jsonl:1: missing or mistyped field(s) context',
                          f'`python data/hellaswag/prepare.py --input={FIXTURE}`')
    # the other checks, in this process: each a UserError, which every script prints as that one line
    tok = Tokenizer.from_meta(sort_run[0] / 'meta.pkl')
    cases = {
        'label.jsonl': (good + '\n' + json.dumps({'context': '\n0=', 'endings': ['0\n', '1\n'], 'label': 2}),
                        r'label.jsonl:2: label 2 is not the index'),
        'bool.jsonl': (json.dumps({'context': '\n0=', 'endings': ['0\n', '1\n'], 'label': True}),
                       r'bool.jsonl:1: label True is not the index'),
        'long.jsonl': (json.dumps({'context': '\n0=', 'endings': ['0' * 20 + '\n', '1\n'], 'label': 0}),
                       r"long.jsonl:1: an ending of 21 tokens does not fit the model's context of 16"),
        'fields.jsonl': (json.dumps({'question': 'x', 'endings': ['0\n', '1\n'], 'label': 0}),
                         r'fields.jsonl:1: missing or mistyped field\(s\) context: every line needs context \(str\)'),
        'one.jsonl': (json.dumps({'context': '\n0=', 'endings': ['0\n'], 'label': 0}),
                      r'one.jsonl:1: endings must be a list of two or more'),
        'vocab.jsonl': (json.dumps({'context': '\nx=', 'endings': ['0\n', '1\n'], 'label': 0}),
                        r"vocab.jsonl:1: character 'x' is not in this"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text + '\n')
        with pytest.raises(UserError, match=message):
            eval_tasks.read_choices(str(tmp_path / name), tok, block_size=16)
    # and the official file offline, without --input: one line naming the local alternative
    proc = run_script('data/hellaswag/prepare.py', f'--out_dir={tmp_path / "hs"}', check=False,
                      env={'https_proxy': 'http://127.0.0.1:9', 'HTTPS_PROXY': 'http://127.0.0.1:9'})
    assert_one_line_error(proc, 'cannot download', '--input=')


def test_scoring_draws_a_bar_on_a_terminal_and_none_when_piped(shakespeare_char, tmp_path):
    # 200 questions from tiny Shakespeare (a line's start; its own end or three other lines' ends) for a random
    # tiny character model: the bar, not the score, is what is checked
    text = open(f'{REPO}/data/shakespeare_char/input.txt').read()
    lines = [line for line in text.split('\n') if len(line) >= 30][:800]
    with open(tmp_path / 'choices.jsonl', 'w') as f:
        for i in range(200):
            endings = [lines[i + k * 200][15:30] for k in range(4)]
            f.write(json.dumps({'context': lines[i][:15], 'endings': endings, 'label': 0}) + '\n')
    tok = Tokenizer.from_meta(f'{REPO}/data/shakespeare_char/meta.pkl')
    torch.manual_seed(0)
    model = new_model(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=tok.vocab_size)
    save_checkpoint(make_checkpoint(model, torch.optim.SGD(model.parameters(), lr=0.0), 0, 9.9,
                                    {'dataset': shakespeare_char}, tok), str(tmp_path / 'out' / 'ckpt.pt'))
    args = ['eval_tasks.py', f'--out_dir={tmp_path / "out"}', f'--task={tmp_path / "choices.jsonl"}', '--device=cpu',
            '--dtype=float32', '--batch_size=8']
    piped = run_script(*args)
    assert 'on 200 examples' in piped.stdout and piped.stderr == '', piped.stderr
    # stderr a pseudo-terminal, as in an interactive shell: tqdm's bar, with the count, the rate and the ETA
    terminal, child_end = pty.openpty()
    fcntl.ioctl(child_end, termios.TIOCSWINSZ, struct.pack('HHHH', 24, 100, 0, 0))  # 100 columns: a new pty has 0
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=child_end,
                            env=script_env(), text=True)
    os.close(child_end)
    drawn = b''
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: the child has closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    os.close(terminal)
    assert proc.wait(timeout=300) == 0 and 'on 200 examples' in proc.stdout.read()
    bar = [line for line in drawn.decode('utf-8').split('\r') if line.strip()][-1]  # the bar as it was left
    assert re.fullmatch(r'scoring: 100%\|█+\| 200/200 \[\d\d:\d\d<00:00, +[\d.]+example/s\]\s*', bar), drawn
