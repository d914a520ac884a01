"""
Preference pairs for train_reward.py, made offline from a model's own samples:

    python data/preferences/prepare.py        # -> train.jsonl, val.jsonl next to this file
    python data/preferences/prepare.py config/preferences_tldr_cpu.py   # the SFT model's summaries, by ROUGE-L

The rule, a reproducible stand-in for human labels: for each prompt (a window of prompt_len tokens of
the dataset's train split, or a prompt drawn from prompt_file) the model writes two completions
(temperature 1, ending at end-of-text where the vocabulary has one, as rlhf.py samples them); both are
scored by the reward named in `label` (rewards.py; 'sentiment' = VADER's compound score), or by their
ROUGE-L against the prompt's reference completion ('rouge_l', a .jsonl prompt_file with "completion"s);
the higher-scored one is `chosen`, the other `rejected`. Pairs whose scores differ by less than
min_margin are dropped as ties. This is how Stiennon et al. collected their comparisons: on samples of
the policy that PPO will start from, so that the reward model is trained where PPO will query it. The
first val_fraction of the pairs are held out in val.jsonl, the rest go to train.jsonl.
Each line: {"prompt": ..., "chosen": ..., "rejected": ..., "chosen_score": ..., "rejected_score": ...}.
"""
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repo root, as data/__init__.py says
import numpy as np
import torch
from tqdm import tqdm

import dataloader
from checkpoint import check_vocabulary, load_model, tokenizer_for, trained_dataset
from configurator import UserError, configure
from data.common import atomic_outputs
from ppo import completion_mask, completion_texts, generate_completions, prompt_windows, read_prompt_file
from rewards import get_reward, rouge_l

init_from = 'out-shakespeare-char-cpu'  # the model whose samples are compared: an out_dir, a GPT-2 name or a HF dir
dataset = ''  # prompts are windows of its train split; '' = the model's own dataset
prompt_file = ''  # instead: prompts drawn from a .txt (one per line) or .jsonl ({"prompt": ...} per line) file
label = 'sentiment'  # the reward that decides which completion is chosen, or 'rouge_l' (against the prompt_file's
# "completion" of each prompt)
min_margin = 0.3  # pairs whose two scores differ by less are ties, and dropped
n_pairs = 30000  # pairs kept, train + held-out (10,000 gave a reward model 85%; 30,000 gave 90%)
val_fraction = 0.1  # held out for the reward model's accuracy
prompt_len = 16
max_new_tokens = 48
batch_size = 256  # prompts sampled together
out_dir = _HERE
device = 'cpu'
seed = 1337
configure(globals())

if not 0 < val_fraction < 1 or n_pairs < 2:
    raise UserError(f"need 0 < val_fraction < 1 and n_pairs >= 2 (got {val_fraction}, {n_pairs})")
torch.manual_seed(seed)
rng = np.random.default_rng(seed)
model, checkpoint = load_model(init_from, dropout=0.0)
model.to(device)
tokenizer = tokenizer_for(checkpoint, init_from)
if prompt_file:
    file_prompts, references = read_prompt_file(prompt_file, tokenizer, max_new_tokens, model.config.block_size)
    if label == 'rouge_l' and references is None:
        raise UserError(f"label='rouge_l' scores against each prompt's reference: {prompt_file} must be a .jsonl "
                        f"whose every line has a \"completion\" (as data/tldr/prepare.py writes posts_train.jsonl)")
else:
    if label == 'rouge_l':
        raise UserError("label='rouge_l' needs references: set prompt_file=<a .jsonl of prompts and completions>")
    dataset = dataset or trained_dataset(checkpoint)
    if not dataset:
        raise UserError(f"{init_from}/ckpt.pt names no dataset: set dataset=<the prepared dataset to take prompts "
                        f"from> or prompt_file=<a file of prompts>")
    if prompt_len + max_new_tokens > model.config.block_size:
        raise UserError(f"prompt_len + max_new_tokens ({prompt_len + max_new_tokens}) is longer than the model's "
                        f"context of {model.config.block_size}")
    data_dir = dataloader.check_dataset(dataset, prompt_len)
    check_vocabulary(tokenizer, dataset, init_from)
    train_tokens = dataloader.open_split(data_dir, 'train')
score = None if label == 'rouge_l' else get_reward(label, device)


def draw_prompts():
    """batch_size prompts (token lists) and, for label='rouge_l', their reference completions."""
    if not prompt_file:
        return prompt_windows(train_tokens, batch_size, prompt_len, rng), None
    rows = rng.integers(0, len(file_prompts), size=batch_size)
    return [file_prompts[i] for i in rows], None if references is None else [references[i] for i in rows]


pairs, drawn = [], 0
# on a terminal a bar (tqdm's disable=None: stderr a terminal); in logs and pipes a line per batch instead
with tqdm(total=n_pairs, desc='pairs', unit='pair', disable=None) as bar:
    while len(pairs) < n_pairs:
        prompts, refs = draw_prompts()
        # each prompt twice: rows i and i + batch_size are its two completions
        seq, starts = generate_completions(model, prompts + prompts, max_new_tokens, device, tokenizer.eot_token,
                                           tokenizer.vocab_size)
        mask = completion_mask(seq, starts, max_new_tokens, tokenizer.eot_token)
        texts = completion_texts(tokenizer, seq, starts, max_new_tokens, mask)
        prompt_texts = [tokenizer.decode(p) for p in prompts]
        scores = rouge_l(texts, refs + refs) if label == 'rouge_l' else score(texts, prompt_texts + prompt_texts)
        for i, prompt in enumerate(prompt_texts):
            (a, score_a), (b, score_b) = (texts[i], scores[i]), (texts[i + batch_size], scores[i + batch_size])
            drawn += 1
            if abs(score_a - score_b) < min_margin:
                continue
            if score_b > score_a:
                (a, score_a), (b, score_b) = (b, score_b), (a, score_a)
            pairs.append({'prompt': prompt, 'chosen': a, 'rejected': b, 'chosen_score': score_a,
                          'rejected_score': score_b})
        bar.set_postfix_str(f'{drawn} drawn', refresh=False)
        bar.update(min(len(pairs), n_pairs) - bar.n)
        if bar.disable:
            print(f"{len(pairs)} pairs kept of {drawn} drawn")
        if not pairs and drawn >= 10 * batch_size:
            raise UserError(f"none of {drawn} pairs of completions differ by min_margin={min_margin} under "
                            f"'{label}': lower min_margin")
pairs = pairs[:n_pairs]

n_val = max(1, int(len(pairs) * val_fraction))
with atomic_outputs(out_dir, ['val.jsonl', 'train.jsonl']) as files:
    for name, part in (('val.jsonl', pairs[:n_val]), ('train.jsonl', pairs[n_val:])):
        for pair in part:
            files[name].write((json.dumps(pair) + '\n').encode('utf-8'))
chosen = np.mean([p['chosen_score'] for p in pairs])
rejected = np.mean([p['rejected_score'] for p in pairs])
print(f"labelled by '{label}' with min_margin {min_margin}: mean score chosen {chosen:.3f}, rejected {rejected:.3f}")
print(f"wrote {len(pairs) - n_val} pairs to {os.path.join(out_dir, 'train.jsonl')} and {n_val} held-out pairs "
      f"to {os.path.join(out_dir, 'val.jsonl')}")
