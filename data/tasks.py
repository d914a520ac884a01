"""
What the algorithmic tasks (data/adder, data/sort) share: problems written as lines of characters,
a loss mask over their answers, a deterministic held-out split, and exact-match evaluation.

A problem is a (question, answer) pair of strings, e.g. ('12+34=', '640'). On disk it is one line,
question + answer + '\n', in a character vocabulary (meta.pkl). Beside train.bin / val.bin go
train_mask.bin / val_mask.bin: uint8, one byte per token, 1 on the answer and its line end, 0 on the
question. dataloader.read_windows turns the targets under a 0 into -1, which the loss ignores (and those
of an answer whose question the window cut off), so the model is trained only on what it can compute (the
questions are random: predicting them is noise),
as minGPT masks its questions, while the token stream stays the repo's plain uint16 and train.py
stays the one training script.

The evaluator reads the problems back from these files, so it scores exactly the problems that were
trained on (train.bin) and held out (val.bin).
"""
import hashlib
import json
import os
import pickle
import random
from collections import Counter, defaultdict

import numpy as np
import torch

import hardware
from checkpoint import load_model, tokenizer_for, trained_dataset
from configurator import UserError
from data.common import as_uint16, atomic_outputs, write_ids
from tokenizer import Tokenizer, dataset_dir

LINE_END = '\n'


# -----------------------------------------------------------------------------
# prepare: problems -> train.bin / val.bin + masks + meta.pkl

def split_problems(problems, val_fraction):
    """(train, held_out): round(len * val_fraction) problems held out, taken in the order of the SHA-256 of
    their question (no RNG: the same split on every machine and version, in a shuffled-looking order),
    except that every distinct answer keeps at least one problem in train. A model cannot be asked to
    write an answer it has never seen written: sort's 000000 is the only list whose sorted form ends in 0."""
    n_val = round(len(problems) * val_fraction)
    if not 0 < n_val < len(problems):
        raise UserError(f"--val_fraction={val_fraction} holds out {n_val} of {len(problems)} problems: "
                        f"pick a fraction that leaves at least one problem on each side")
    ordered = sorted(problems, key=lambda p: hashlib.sha256(p[0].encode()).digest())
    in_train = Counter(a for _, a in problems)  # problems per answer still in train
    train, held_out = [], []
    for q, a in ordered:
        if len(held_out) < n_val and in_train[a] > 1:
            held_out.append((q, a))
            in_train[a] -= 1
        else:
            train.append((q, a))
    if len(held_out) < n_val:
        raise UserError(f"--val_fraction={val_fraction} would hold out {n_val} problems, but only {len(held_out)} "
                        f"can go while every answer keeps a problem in train: lower it")
    return train, held_out


def encode_problems(tok, problems):
    """The problems as consecutive lines: (ids uint16 (N,), mask uint8 (N,)), one mask byte per token."""
    text = ''.join(q + a + LINE_END for q, a in problems)
    flags = ''.join('0' * len(q) + '1' * (len(a) + len(LINE_END)) for q, a in problems)
    ids = as_uint16(tok.encode(text))
    mask = np.frombuffer(flags.encode('ascii'), dtype=np.uint8) - ord('0')
    assert ids.size == mask.size, 'a character vocabulary has one token per character'
    return ids, mask


def save_task(out_dir, task, problems, val_fraction, **params):
    """Split the problems and write meta.pkl, train.bin, train_mask.bin, val.bin, val_mask.bin to out_dir,
    all atomically. meta.pkl is the character vocabulary plus {'task': task, **params}, so an evaluator
    can tell which task a checkpoint was trained on."""
    for q, a in problems:
        assert q and a and LINE_END not in q + a, (q, a)
    train, held_out = split_problems(problems, val_fraction)
    tok = Tokenizer.char_from_text(''.join(q + a for q, a in problems) + LINE_END)
    meta = {**tok.meta, 'task': task, **params}
    splits = {'train': encode_problems(tok, train), 'val': encode_problems(tok, held_out)}
    # renamed in this order: a reader never sees new .bin files without their meta.pkl
    names = ['meta.pkl', 'train.bin', 'train_mask.bin', 'val.bin', 'val_mask.bin']
    needed = sum(ids.size * 3 for ids, _ in splits.values())  # 2 bytes a token and 1 of mask; meta.pkl is small
    with atomic_outputs(out_dir, names, needed) as files:
        pickle.dump(meta, files['meta.pkl'])
        for split, (ids, mask) in splits.items():
            write_ids(files[f'{split}.bin'], ids)
            files[f'{split}_mask.bin'].write(mask.tobytes())
    print(f"{len(problems):,} problems: {len(train):,} train ({splits['train'][0].size:,} tokens), "
          f"{len(held_out):,} held out ({splits['val'][0].size:,} tokens), vocab size {tok.vocab_size} -> {out_dir}")
    return train, held_out


# -----------------------------------------------------------------------------
# evaluate: exact match of greedy completions

def read_problems(data_dir, split, tok):
    """The (question, answer) pairs in <split>.bin, in file order: each line cut where its mask turns to 1."""
    ids = np.fromfile(os.path.join(data_dir, f'{split}.bin'), dtype=np.uint16)
    mask = np.fromfile(os.path.join(data_dir, f'{split}_mask.bin'), dtype=np.uint8)
    text = tok.decode(ids)
    flags = (mask + ord('0')).tobytes().decode('ascii')  # '0' question, '1' answer, aligned with text
    problems, start = [], 0
    for line in text.split(LINE_END)[:-1]:
        n_question = flags.index('1', start) - start
        problems.append((line[:n_question], line[n_question:]))
        start += len(line) + len(LINE_END)
    return problems


def exact_match(problems, complete, batch_size=1000):
    """Score complete(questions, max_chars) -> answers (one string per question, at most max_chars
    characters for a right answer) on the problems: (number correct, [(question, answer, got), ...] wrong)."""
    correct, wrong = 0, []
    for i in range(0, len(problems), batch_size):
        batch = problems[i:i + batch_size]
        got = complete([q for q, _ in batch], max(len(a) for _, a in batch))
        assert len(got) == len(batch), 'complete must answer every question'
        for (q, a), g in zip(batch, got):
            if g == a:
                correct += 1
            else:
                wrong.append((q, a, g))
    return correct, wrong


def greedy_completer(model, tok, device):
    """complete(questions, max_chars) for exact_match: the model's greedy continuation of each question
    (with its KV cache) up to the first line end, at most max_chars + 1 tokens."""
    line_end = tok.encode(LINE_END)

    def complete(questions, max_chars):
        answers = [None] * len(questions)
        by_length = defaultdict(list)  # model.generate takes a batch of equal-length prompts
        for i, q in enumerate(questions):
            by_length[len(q)].append(i)
        for idxs in by_length.values():
            # Training windows start at random offsets, so the model learnt every question right after the
            # previous line's end, never at a window start it cannot see the beginning of: prompt it the same way.
            prompts = torch.tensor([line_end + tok.encode(questions[i]) for i in idxs], device=device)  # (B, T)
            out = model.generate(prompts, max_chars + 1, temperature=0)[:, prompts.size(1):]  # (B, max_chars + 1)
            for i, row in zip(idxs, out.tolist()):
                answers[i] = tok.decode(row).partition(LINE_END)[0]  # no line end: too long, and so wrong
        return answers

    return complete


def write_choices(problems, path, seed=0):
    """Write (question, answer) problems as a 4-way multiple-choice jsonl: the context is a line end and the
    question (how the model saw questions in training, after the previous line), the endings the right answer
    and the answers of three other problems (different from it and from each other), each with its line end,
    the right one at a random place. Wrong and right endings then come from the same distribution of answers,
    so a model that ignores the question (say, one that likes some answers better) is right 1 time in 4."""
    if len({a for _, a in problems}) < 4:
        raise UserError(f"{len(problems)} problems with fewer than 4 different answers cannot make 4-way choices")
    rng = random.Random(seed)
    with open(path, 'w') as f:
        for q, a in problems:
            endings = []
            while len(endings) < 3:
                b = rng.choice(problems)[1]
                if b != a and b not in endings:
                    endings.append(b)
            label = rng.randrange(4)
            endings.insert(label, a)
            f.write(json.dumps({'context': LINE_END + q, 'endings': [e + LINE_END for e in endings],
                                'label': label}) + '\n')
    return path


def evaluate(task, out_dir, describe, max_problems, batch_size, show, device, dtype, choices=''):
    """The evaluators' body: load out_dir/ckpt.pt, complete the problems of its dataset's train and val
    splits (the first max_problems of each) and print exact-match accuracy with a few wrong answers,
    described by describe(question, answer, got); with choices, also write the held-out problems there as a
    multiple-choice file for eval_tasks.py (write_choices). Returns {'train': accuracy, 'held-out': accuracy}."""
    if batch_size < 1 or show < 0:
        raise UserError(f"batch_size must be at least 1 and show at least 0, got {batch_size} and {show}")
    model, checkpoint = load_model('resume', out_dir)
    tok = tokenizer_for(checkpoint)  # the same vocabulary lookup as sample.py
    dataset = trained_dataset(checkpoint)
    trained_on = (tok.meta or {}).get('task')
    if trained_on != task:
        what = f"the '{trained_on}' task" if trained_on else f"dataset '{dataset}', not the {task} task"
        raise UserError(f"{out_dir}/ckpt.pt was trained on {what}: evaluate it with "
                        f"{f'data/{trained_on}/evaluate.py' if trained_on else 'sample.py'}")
    hw = hardware.setup(device, dtype)
    model.eval().to(hw.device)
    complete = greedy_completer(model, tok, hw.device)
    accuracy = {}
    for split, name in (('train', 'train'), ('val', 'held-out')):
        problems = read_problems(dataset_dir(dataset), split, tok)
        scored = problems[:max_problems] if max_problems > 0 else problems
        with hw.ctx:
            correct, wrong = exact_match(scored, complete, batch_size)
        accuracy[name] = correct / len(scored)
        subset = f" (the first {len(scored):,} of {len(problems):,})" if len(scored) < len(problems) else ''
        print(f"{name}: {correct:,}/{len(scored):,} exact = {100 * accuracy[name]:.2f}%{subset}")
        for q, a, got in wrong[:show]:
            print(f"  wrong: {describe(q, a, got)}")
    if choices:
        write_choices(problems, choices)  # the held-out split, read last
        print(f"wrote the {len(problems):,} held-out problems as 4-way multiple choice to {choices}: "
              f"python eval_tasks.py --out_dir={out_dir} --task={choices}")
    return accuracy
