"""The algorithmic tasks (data/adder, data/sort, data/tasks.py): what prepare writes and how it splits,
exact-match scoring of oracles, and a tiny model trained through train.py that sorts far better than chance."""
import itertools
import json
import os
import re
from collections import Counter

import numpy as np

from conftest import assert_one_line_error, run_script
from data.tasks import exact_match
from tokenizer import Tokenizer

OUTPUTS = ['manifest.json', 'meta.pkl', 'train.bin', 'train_mask.bin', 'val.bin', 'val_mask.bin']


def read_lines(out, split):
    """<split>.bin as (question, answer) pairs, read here without data/tasks.py, checking on the way that
    the mask is 0 on 'question=' and 1 on the answer and its line end."""
    tok = Tokenizer.from_meta(out / 'meta.pkl')
    ids = np.fromfile(out / f'{split}.bin', dtype=np.uint16)
    mask = np.fromfile(out / f'{split}_mask.bin', dtype=np.uint8)
    text = tok.decode(ids)
    assert len(mask) == len(ids) and text.endswith('\n')
    pairs, expected_mask = [], []
    for line in text[:-1].split('\n'):
        question, answer = line.split('=')
        pairs.append((question + '=', answer))
        expected_mask += [0] * (len(question) + 1) + [1] * (len(answer) + 1)
    assert mask.tolist() == expected_mask
    return pairs


def prepare(task, out, *args):
    run_script(f'data/{task}/prepare.py', f'--out_dir={out}', *args)
    assert sorted(os.listdir(out)) == OUTPUTS  # no .tmp left behind
    return read_lines(out, 'train'), read_lines(out, 'val')


def check_split(train, held_out, all_questions):
    """Disjoint, together every problem once, and every held-out answer also written somewhere in train."""
    train_q, held_q = [q for q, _ in train], [q for q, _ in held_out]
    assert len(set(train_q)) == len(train_q) and len(set(held_q)) == len(held_q)
    assert not set(train_q) & set(held_q)
    assert set(train_q) | set(held_q) == set(all_questions)
    assert {a for _, a in held_out} <= {a for _, a in train}


def reversed_sum(question, ndigit):
    a, b = question[:-1].split('+')
    assert len(a) == len(b) == ndigit
    return str(int(a) + int(b)).zfill(ndigit + 1)[::-1]


def test_adder_prepare_writes_every_sum_split_90_10(tmp_path):
    train, held_out = prepare('adder', tmp_path / 'a')
    assert (len(train), len(held_out)) == (9_000, 1_000)  # 10,000 two-digit problems, 10% held out
    check_split(train, held_out, [f"{a:02d}+{b:02d}=" for a in range(100) for b in range(100)])
    assert all(answer == reversed_sum(q, 2) for q, answer in train + held_out)
    assert ('57+68=', '521') in train + held_out  # 125 written backwards
    # deterministic: a second run writes the same bytes
    prepare('adder', tmp_path / 'b')
    for name in OUTPUTS:
        assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes(), name


def test_adder_prepare_other_ndigit(tmp_path):
    train, held_out = prepare('adder', tmp_path, '--ndigit=1', '--val_fraction=0.2')
    assert (len(train), len(held_out)) == (80, 20)
    check_split(train, held_out, [f"{a}+{b}=" for a in range(10) for b in range(10)])
    assert all(answer == reversed_sum(q, 1) for q, answer in train + held_out)
    assert_one_line_error(run_script('data/adder/prepare.py', f'--out_dir={tmp_path}', '--ndigit=7', check=False),
                          'ndigit')


def test_sort_prepare_writes_every_list_split_75_25(tmp_path):
    train, held_out = prepare('sort', tmp_path)
    assert (len(train), len(held_out)) == (547, 182)  # 3^6 = 729 lists, round(729 / 4) held out
    check_split(train, held_out, [''.join(d) + '=' for d in itertools.product('012', repeat=6)])
    assert all(answer == ''.join(sorted(q[:-1])) for q, answer in train + held_out)
    assert ('000000=', '000000') in train  # the only list whose sorted form ends in 0 can never be held out


def test_exact_match_scores_oracle_100_and_corrupted_below(tmp_path):
    _, held_out = prepare('adder', tmp_path)
    asked = []

    def oracle(questions, max_chars):
        asked.append((len(questions), max_chars))
        return [reversed_sum(q, 2) for q in questions]

    correct, wrong = exact_match(held_out, oracle, batch_size=64)
    assert (correct, wrong) == (1_000, [])
    assert asked == [(64, 3)] * 15 + [(40, 3)]  # 1,000 problems in batches of 64

    def corrupted(questions, max_chars):
        # every 4th question: a wrong last digit, or the right answer with one digit too many
        answers = [reversed_sum(q, 2) for q in questions]
        for i in range(0, len(answers), 4):
            a = answers[i]
            answers[i] = a[:-1] + str((int(a[-1]) + 1) % 10) if i % 8 == 0 else a + '0'
        return answers

    correct, wrong = exact_match(held_out, corrupted, batch_size=100)
    assert correct == 1_000 - 250
    assert [q for q, _, _ in wrong] == [q for q, _ in held_out[::4]]
    assert all(got != answer for _, answer, got in wrong)


def test_tiny_run_sorts_better_than_chance(sort_run, tmp_path):
    _, out, held_out, _ = sort_run  # a tiny model trained on sort through train.py (conftest)
    proc = run_script('data/sort/evaluate.py', f'--out_dir={out}', f'--choices={tmp_path / "choices.jsonl"}')
    # --choices wrote the held-out problems as 4-way multiple choice (for eval_tasks.py): right answer at label
    choices = [json.loads(line) for line in open(tmp_path / 'choices.jsonl')]
    assert [(c['context'], c['endings'][c['label']]) for c in choices] == [('\n' + q, a + '\n') for q, a in held_out]
    assert all(len(set(c['endings'])) == 4 for c in choices)
    scores = dict(re.findall(r'^(train|held-out): [\d,]+/[\d,]+ exact = ([\d.]+)%', proc.stdout, re.M))
    # Chance: a model that ignores the list can at best always write the most common sorted form,
    # right on that form's share of the held-out lists (001122-like lists: 90 of 729 overall, ~12%).
    chance = max(Counter(a for _, a in held_out).values()) / len(held_out)
    assert float(scores['held-out']) / 100 > max(3 * chance, 0.5), (chance, proc.stdout)
    assert float(scores['train']) / 100 > max(3 * chance, 0.5), proc.stdout
    # the adder's evaluator refuses a sort checkpoint; no checkpoint is a one-line error too
    assert_one_line_error(run_script('data/adder/evaluate.py', f'--out_dir={out}', check=False),
                          "'sort' task", 'data/sort/evaluate.py')
    assert_one_line_error(run_script('data/sort/evaluate.py', f'--out_dir={tmp_path / "none"}', check=False),
                          'no checkpoint')
