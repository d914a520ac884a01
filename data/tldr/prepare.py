"""
Reddit TL;DR summarization (Stiennon et al. 2020, "Learning to summarize from human feedback"; minRLHF's second
project) for the three stages of RLHF: supervised finetuning (train.py), the reward model (train_reward.py) and
PPO (rlhf.py). See the README's "Summarization from human feedback".

    python data/tldr/prepare.py                                  # the hub (needs the network)
    python data/tldr/prepare.py --input=tldr.parquet --comparisons=comparisons.jsonl   # local copies, offline
    python data/tldr/prepare.py --synthetic=True                 # offline: posts built from tiny Shakespeare

--input: the posts with reference summaries, a hub name (CarperAI/openai_summarize_tldr: ~117k train posts, columns
prompt and label) or local .jsonl / .parquet files or a save_to_disk folder with a prompt column and a label (or
completion) column. --comparisons: the human comparisons, a hub name (CarperAI/openai_summarize_comparisons: ~92k
train pairs) or local files with chosen, rejected and prompt columns ('' = none). The hub's train split is train, its
valid (valid1) split val; a local table is split by the SHA-256 of each prompt, so a post is never on both sides.
Local files must be UTF-8; --errors=replace reads undecodable bytes as U+FFFD instead of stopping.

Each example is a prompt, the post ending in "TL;DR:", and a completion, " " + the summary, then <|endoftext|>:
the model learns to write the summary and then stop. Outputs, next to this file by default:

    train.bin, val.bin                 SFT tokens (GPT-2 BPE): prompt + completion + <|endoftext|>, one after another
    train_mask.bin, val_mask.bin       1 on the completion and its <|endoftext|>, 0 on the prompt (data/tasks.py's
                                       mask files): train.py's loss is on the summaries only
    posts_train.jsonl, posts_val.jsonl  {"prompt", "completion"}: rlhf.py's prompts, and its held-out posts with
                                       their references for ROUGE-L
    comparisons_train.jsonl, comparisons_val.jsonl  {"prompt", "chosen", "rejected"} for train_reward.py

Left out and counted (never silently): an empty summary, a post too long for the context (prompt longer than
block_size - max_completion_tokens tokens) or a summary longer than max_completion_tokens (its <|endoftext|>
included), and a comparison whose chosen and rejected texts summarize different posts.

--synthetic=True: a corpus anyone can build offline, to run the whole chain on a CPU. A post is 3 to 6
consecutive lines of tiny Shakespeare (train posts from the first 90% of the text, val posts from the rest, as
data/shakespeare splits it), and its reference summary is its first line: a fixed function of the post that a
small model can learn. A post starts at every line, so every line is the first line of one post and inside a few
others: the first line cannot be told from memory of the text, only read off the post. The comparisons are pairs
of candidate summaries of a post (the first line; its first half; the first line less one word; another line of the
post; another post's first line; and a degenerate one: empty, the first word alone, or a fragment repeated), the
"labeller" preferring the one with the higher ROUGE-L against the first line and any real summary to a degenerate
one, ties dropped.
"""
import hashlib
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repo root, as data/__init__.py says
import numpy as np
from tqdm import tqdm

from configurator import UserError, configure
from data.common import (atomic_outputs, check_errors, hub_offline, is_local, load_hub, load_local, probe_hub,
                         read_or_download, split_documents, write_ids)
from rewards import rouge_l
from tokenizer import Tokenizer

input = 'CarperAI/openai_summarize_tldr'  # posts + reference summaries: a hub name or local files
comparisons = 'CarperAI/openai_summarize_comparisons'  # human comparisons: a hub name, local files, or '' for none
synthetic = False  # True: build posts from tiny Shakespeare instead (offline), see above
block_size = 1024  # the context the models will have: prompt + completion must fit it
max_completion_tokens = 64  # the longest summary kept, its <|endoftext|> included (rlhf.py's max_new_tokens)
val_fraction = 0.05  # for a local table, which has no val split of its own
post_stride = 1  # synthetic: a post starts at every post_stride-th line (posts overlap: each line is the first of one)
comparisons_per_post = 3  # synthetic: candidate pairs drawn per post
max_posts = 0  # synthetic: at most this many posts per split (0 = all: ~4,700 train, ~530 val)
seed = 1337  # synthetic: the post lengths and the candidate pairs
errors = 'strict'  # local files: 'strict' stops at bytes that are not UTF-8; 'replace' reads them as U+FFFD; 'ignore'
out_dir = _HERE
configure(globals())
check_errors(errors)

TLDR = 'TL;DR:'
if max_completion_tokens < 2 or block_size <= max_completion_tokens:
    raise UserError(f"need 2 <= max_completion_tokens < block_size, got {max_completion_tokens} and {block_size}")
if not 0 < val_fraction < 1:
    raise UserError(f"--val_fraction={val_fraction} must be between 0 and 1 (exclusive)")
tok = Tokenizer.gpt2()


# -----------------------------------------------------------------------------
# the examples: (prompt, completion) text pairs per split

def as_prompt(post):
    """The post as a prompt that ends in 'TL;DR:' (the comparisons' posts come without it)."""
    post = post.strip()
    return post if post.endswith(TLDR) else post + '\n' + TLDR


def as_completion(summary):
    """' ' + the summary, the form that follows 'TL;DR:' (some sources start summaries with 'TL;DR:' themselves)."""
    summary = summary.strip()
    if summary.startswith(TLDR):
        summary = summary[len(TLDR):].strip()
    return ' ' + summary if summary else ''


def split_of(prompt):
    """'val' for about val_fraction of the posts, by the SHA-256 of the prompt: the same on every machine."""
    h = int.from_bytes(hashlib.sha256(prompt.encode('utf-8')).digest()[:8], 'big')
    return 'val' if h < val_fraction * 2 ** 64 else 'train'


def load_table(spec, what, post_of):
    """{'train': rows, 'val': rows} of a hub dataset (its train and valid / valid1 splits) or of local files, split
    by the post each row is of (post_of(row), the prompt as_prompt writes it): a post's SFT example and all its
    comparisons fall on the same side."""
    if is_local(spec):
        table, _ = load_local(spec, errors, quiet=True)
        rows = {'train': [], 'val': []}
        for row in table:
            rows[split_of(post_of(row))].append(row)
        return rows
    if not hub_offline():
        probe_hub(f"download {what} '{spec}'", " (or --synthetic=True for a corpus made from tiny Shakespeare)")
    splits = load_hub(spec)
    val = next((name for name in ('valid', 'valid1', 'validation', 'test') if name in splits), None)
    if 'train' not in splits or val is None:
        raise UserError(f"'{spec}' has splits {list(splits)}: need a train split and a valid / valid1 one")
    return {'train': splits['train'], 'val': splits[val]}


def column(row, names, spec):
    for name in names:
        if isinstance(row.get(name), str):
            return row[name]
    raise UserError(f"{spec}: a row has no text column {' or '.join(names)} (its columns: {', '.join(row)})")


def sft_examples(spec):
    rows = load_table(spec, 'the posts', lambda row: as_prompt(column(row, ('prompt',), spec)))
    return {split: [(as_prompt(column(r, ('prompt',), spec)), as_completion(column(r, ('label', 'completion'), spec)))
                    for r in part] for split, part in rows.items()}


def comparison(row, spec):
    """(prompt, chosen, rejected), or None when chosen and rejected are not summaries of one post. Chosen and
    rejected are either summaries ('TL;DR: ...', the post in the prompt column) or whole texts, post + 'TL;DR:'
    + summary; a post they carry must be the prompt's, and the same in both."""
    heads, summaries = [], []
    for key in ('chosen', 'rejected'):
        head, sep, summary = column(row, (key,), spec).rpartition(TLDR)
        heads.append(head.strip() if sep else '')
        summaries.append(as_completion(summary))
    prompt = row.get('prompt') or heads[0]
    posts = {as_prompt(h) for h in heads if h} | ({as_prompt(prompt)} if prompt else set())
    if len(posts) != 1:
        return None
    return posts.pop(), *summaries


# -----------------------------------------------------------------------------
# the synthetic corpus: posts of tiny Shakespeare lines, summarized by their first line

def shakespeare_posts():
    """{'train': posts, 'val': posts}, each a list of lines (at least 3 words, no speaker names like 'ROMEO:')."""
    url = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
    text = read_or_download(os.path.join(os.path.dirname(_HERE), 'shakespeare_char', 'input.txt'), url)
    rng = np.random.default_rng(seed)
    posts = {}
    for split, part in zip(('train', 'val'), split_documents([text], val_fraction=0.1)):
        lines = [line.strip() for line in part[0].split('\n')]
        lines = [line for line in lines if len(line.split()) >= 3 and not line.endswith(':')]
        posts[split] = []
        for i in range(0, len(lines) - 6, post_stride):
            if 0 < max_posts <= len(posts[split]):
                break
            posts[split].append(lines[i:i + int(rng.integers(3, 7))])
    return posts, rng


def synthetic_prompt(lines):
    return as_prompt('POST: ' + '\n'.join(lines))


def candidates(lines, other, rng):
    """Summaries of a post of varying quality: its first line, four worse ones, and one degenerate one (empty, cut
    to its first word, or a fragment repeated), the failures a policy drifts into and that the reward model must
    rank last. Returns (texts, degenerate flags)."""
    words = lines[0].split()
    drop = int(rng.integers(len(words)))
    texts = [lines[0], ' '.join(words[:(len(words) + 1) // 2]), ' '.join(words[:drop] + words[drop + 1:]),
             lines[int(rng.integers(1, len(lines)))], other[0]]
    degenerate = ['', words[0], ' '.join(words[:2] * 4)][int(rng.integers(3))]
    return texts + [degenerate], [False] * len(texts) + [True]


def synthetic_comparisons(posts, rng):
    """comparisons_per_post pairs of candidates per post, the labeller preferring the higher ROUGE-L against the
    first line, and any real candidate to a degenerate one (as a person would); ties are dropped."""
    options = [candidates(lines, posts[(k + 1 + int(rng.integers(len(posts) - 1))) % len(posts)], rng)
               for k, lines in enumerate(posts)]
    n = len(options[0][0])
    scores = np.array(rouge_l([o for opts, _ in options for o in opts], [p[0] for p in posts for _ in range(n)]))
    scores = scores.reshape(len(posts), n) - 2.0 * np.array([flags for _, flags in options])  # below any real one
    pairs = []
    for lines, (opts, _), s in zip(posts, options, scores):
        for _ in range(comparisons_per_post):
            a, b = rng.choice(n, size=2, replace=False)
            if s[a] == s[b]:
                continue  # a tie: no preference
            if s[b] > s[a]:
                a, b = b, a
            pairs.append((synthetic_prompt(lines), as_completion(opts[a]), as_completion(opts[b])))
    return pairs


# -----------------------------------------------------------------------------
# tokens, masks and files

def encode(examples, split, skipped):
    """(ids, mask, kept examples) of one split's (prompt, completion) pairs; skipped counts what was left out."""
    ids, mask, kept = [], [], []
    for prompt, completion in tqdm(examples, desc=f'tokenizing {split}', unit='post', disable=None):  # terminals only
        if not completion:
            skipped['an empty summary'] += 1
            continue
        p = tok.encode(prompt)
        c = tok.encode(completion) + [tok.eot_token]
        if len(c) > max_completion_tokens or len(p) > block_size - max_completion_tokens:
            skipped[f'too long for the context ({split})'] += 1
            continue
        ids += p + c
        mask += [0] * len(p) + [1] * len(c)
        kept.append((prompt, completion))
    if not kept:
        raise UserError(f"no {split} example is left to write ({dict(skipped)}): check --input, or raise "
                        f"--block_size / --max_completion_tokens")
    return np.array(ids, dtype=np.uint16), np.array(mask, dtype=np.uint8), kept


def jsonl(records, keys):
    return ''.join(json.dumps(dict(zip(keys, r))) + '\n' for r in records).encode('utf-8')


if synthetic:
    posts, rng = shakespeare_posts()
    examples = {split: [(synthetic_prompt(p), ' ' + p[0]) for p in part] for split, part in posts.items()}
    source = 'tiny Shakespeare (synthetic: the summary is the first line)'
else:
    examples = sft_examples(input)
    pairs = {'train': [], 'val': []}
    if comparisons:
        def post_of(row):  # a pair of two posts has none: all such go to one side, and are left out there
            return (comparison(row, comparisons) or ('',))[0]
        for split, rows in load_table(comparisons, 'the comparisons', post_of).items():
            found = [comparison(row, comparisons) for row in rows]
            pairs[split] = [p for p in found if p is not None and p[1] and p[2]]
            if len(pairs[split]) < len(found):
                print(f"{comparisons} ({split}): left out {len(found) - len(pairs[split]):,} of {len(found):,} pairs "
                      f"whose chosen and rejected do not summarize the same post, or one of which is empty")
            if not pairs[split]:
                raise UserError(f"{comparisons} has no usable {split} comparison (a prompt, and chosen and rejected "
                                f"summaries of that post)")
    source = input

skipped = {'an empty summary': 0, 'too long for the context (train)': 0, 'too long for the context (val)': 0}
encoded = {split: encode(examples[split], split, skipped) for split in ('train', 'val')}
if synthetic:  # comparisons of the posts that were kept, so that every one is a post of posts_<split>.jsonl
    kept = {split: {prompt for prompt, _ in encoded[split][2]} for split in encoded}
    pairs = {split: synthetic_comparisons([p for p in part if synthetic_prompt(p) in kept[split]], rng)
             for split, part in posts.items()}
names = ['train.bin', 'val.bin', 'train_mask.bin', 'val_mask.bin', 'posts_train.jsonl', 'posts_val.jsonl']
names += ['comparisons_train.jsonl', 'comparisons_val.jsonl'] if pairs['train'] else []
with atomic_outputs(out_dir, names) as files:
    for split, (ids, mask, kept) in encoded.items():
        write_ids(files[f'{split}.bin'], ids)
        files[f'{split}_mask.bin'].write(mask.tobytes())
        files[f'posts_{split}.jsonl'].write(jsonl(kept, ('prompt', 'completion')))
        if pairs['train']:
            files[f'comparisons_{split}.jsonl'].write(jsonl(pairs[split], ('prompt', 'chosen', 'rejected')))
for reason, count in skipped.items():
    if count:
        print(f"left out {count:,} examples: {reason} (block_size {block_size}, max_completion_tokens "
              f"{max_completion_tokens})")
for split, (ids, mask, kept) in encoded.items():
    print(f"{split}: {len(kept):,} posts, {ids.size:,} tokens ({int(mask.sum()):,} of them summary), "
          f"{len(pairs[split]):,} comparisons")
print(f"from {source} -> {out_dir}")
