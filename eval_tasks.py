"""
Zero-shot evaluation of any model: multiple-choice accuracy (HellaSwag, or any local file of the same shape)
and bits per byte on a prepared dataset. init_from as everywhere: 'resume' (out_dir/ckpt.pt), another out_dir,
a GPT-2 name, or a local Hugging Face directory (an export.py directory included).

$ python data/hellaswag/prepare.py                                   # -> data/hellaswag/val.jsonl
$ python eval_tasks.py --init_from=gpt2 --task=hellaswag
$ python eval_tasks.py --out_dir=out-adder --task=my_choices.jsonl    # your own multiple-choice questions
$ python eval_tasks.py --out_dir=out-shakespeare-char-cpu --task=bpb
$ torchrun --standalone --nproc_per_node=8 eval_tasks.py --init_from=gpt2-xl --task=hellaswag

A multiple-choice file is jsonl, one {"context": str, "endings": [str, ...], "label": int} per line, the endings
written exactly as they continue the context (HellaSwag's begin with a space). Each is scored completion-style, as
build-nanogpt and llm.c score HellaSwag: the model reads context + ending, and the ending's tokens alone are
scored. acc picks the ending with the highest total log-probability, acc_norm the highest mean log-probability
per token (so long endings are not penalised for their length). All endings of an example go into one forward,
several examples per batch; under torchrun each process takes every world_size-th example and the counts are
summed, so the result is the same for any number of processes.

bpb is the loss on the dataset's val split in bits per byte of the text the predicted tokens stand for: a
character model and a BPE model of the same text can be compared by it (their per-token losses cannot).
"""
import json
import math
import os

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from configurator import UserError
from data.common import read_jsonl
from dataloader import eval_batch, to_device
from loop import eval_mode

CHOICE_FIELDS = {'context': str, 'endings': list, 'label': int}


# -----------------------------------------------------------------------------
# multiple choice

def is_raw_hellaswag(path):
    """True when the file's first line is a record of HellaSwag's own jsonl (its context is 'ctx')."""
    with open(path, encoding='utf-8', errors='replace') as f:
        first = next((line for line in f if line.strip()), '')
    try:
        record = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(record, dict) and 'ctx' in record and 'context' not in record


def read_choices(path, tokenizer, block_size):
    """The examples of a multiple-choice jsonl file as (context ids, [ending ids, ...], label), checked: each a
    UserError naming the file and line. A context too long for the model keeps its last tokens, as a
    window would; an ending that does not fit the context with at least one token of context is an error."""
    if not os.path.isfile(path):
        raise UserError(f"no multiple-choice file {path}: for HellaSwag run `python data/hellaswag/prepare.py`; "
                        f"your own tasks are jsonl lines of {{\"context\", \"endings\": [...], \"label\"}}")
    try:
        records = read_jsonl(path, CHOICE_FIELDS)
    except UserError as e:
        if not is_raw_hellaswag(path):
            raise
        raise UserError(f"{e}; this is HellaSwag's own format (ctx, endings, label): convert it with `python "
                        f"data/hellaswag/prepare.py --input={path}`, which writes data/hellaswag/val.jsonl for "
                        f"--task=hellaswag") from None
    examples = []
    for n, record in records:
        endings, label = record['endings'], record['label']
        if len(endings) < 2 or not all(isinstance(e, str) and e for e in endings):
            raise UserError(f"{path}:{n}: endings must be a list of two or more non-empty strings")
        if isinstance(label, bool) or not 0 <= label < len(endings):
            raise UserError(f"{path}:{n}: label {label!r} is not the index of one of the {len(endings)} endings")
        try:
            context = tokenizer.encode(record['context'], strict=True)
            endings = [tokenizer.encode(e, strict=True) for e in endings]
        except UserError as e:
            raise UserError(f"{path}:{n}: {e}") from None
        longest = max(len(e) for e in endings)
        if longest > block_size - 1 or not all(endings):
            raise UserError(f"{path}:{n}: an ending of {longest} tokens does not fit the model's context of "
                            f"{block_size} with the question before it: shorten it or use a longer-context model")
        if not context:
            raise UserError(f"{path}:{n}: the context is empty")
        examples.append((context[-(block_size - longest):], endings, label))
    if not examples:
        raise UserError(f"{path} holds no examples")
    return examples


def ending_logprobs(model, examples, device, vocab_size=None):
    """For a batch of examples, the log-probability of each ending given its context: a list (one per example)
    of (B_endings, 2) tensors of (sum over the ending's tokens, number of tokens). Every ending of every example
    is one row, right-padded: padding comes after each row's real tokens, so causal attention never lets it
    change them. Only the positions that predict ending tokens go through lm_head (V is the largest matmul).
    vocab_size: the tokenizer's; the softmax is over those ids only (GPT-2's 50257 tokens are padded to 50304 rows,
    which an undertrained model gives some probability; an export has no such rows, so lm-eval scores without them)."""
    rows = [(ctx, end) for ctx, endings, _ in examples for end in endings]
    T = max(len(ctx) + len(end) for ctx, end in rows)
    idx = torch.zeros(len(rows), T, dtype=torch.long)
    for i, (ctx, end) in enumerate(rows):
        idx[i, :len(ctx) + len(end)] = torch.tensor(ctx + end)
    # (row, position) of each ending token's prediction: token j of an ending sits at len(ctx) + j and is
    # predicted by the hidden state one position earlier
    row = torch.cat([torch.full((len(end),), i) for i, (_, end) in enumerate(rows)]).to(device)
    pos = torch.cat([torch.arange(len(ctx) - 1, len(ctx) + len(end) - 1) for ctx, end in rows]).to(device)
    idx = idx.to(device)
    h = model.hidden_states(idx)  # (R, T, C)
    logits = model.logits(h[row, pos])[:, :vocab_size]  # (N, V), N ending tokens in all
    logp = F.log_softmax(logits.float(), dim=-1).gather(1, idx[row, pos + 1, None])[:, 0]
    sums = torch.zeros(len(rows), dtype=torch.float64, device=device).index_add_(0, row, logp.double())
    counts = torch.tensor([len(end) for _, end in rows], dtype=torch.float64, device=device)
    per_row = torch.stack([sums, counts], dim=1)  # (R, 2)
    return list(per_row.split([len(endings) for _, endings, _ in examples]))


@torch.no_grad()
def score_choices(model, examples, *, batch_size, ctx, device, rank=0, world_size=1, vocab_size=None,
                  progress=False):
    """{'examples', 'acc', 'acc_norm'} over the examples; ranks take every world_size-th example and all-reduce
    the counts. Every rank runs the same number of forwards (one with fewer examples ends with a batch it does not
    count), so a sharded model (FSDP, whose every forward gathers weights from all ranks) scores them too. The model
    is evaluated in eval mode and left in the mode it came in. vocab_size: ending_logprobs'. progress=True draws a
    bar of rank 0's examples on stderr when it is a terminal."""
    counts = torch.zeros(3, dtype=torch.float64, device=device)  # examples, right by sum, right by mean
    mine = examples[rank::world_size]
    batches = math.ceil(math.ceil(len(examples) / world_size) / batch_size)  # the most any rank has
    bar = tqdm(total=len(mine), desc='scoring', unit='example', disable=bar_off(progress, rank))
    with eval_mode(model), bar:
        for b in range(batches):
            batch = mine[b * batch_size:(b + 1) * batch_size]
            counted = bool(batch)
            with ctx:
                scores = ending_logprobs(model, batch or examples[:1], device, vocab_size)
            if not counted:
                continue
            for (_, _, label), s in zip(batch, scores):
                total, mean = s[:, 0], s[:, 0] / s[:, 1]
                counts += torch.stack([torch.ones((), dtype=torch.float64, device=device),
                                       (total.argmax() == label).double(), (mean.argmax() == label).double()])
            bar.update(len(batch))
    if world_size > 1:
        torch.distributed.all_reduce(counts)
    n = int(counts[0].item())
    return {'examples': n, 'acc': counts[1].item() / n, 'acc_norm': counts[2].item() / n}


def bar_off(progress, rank):
    """tqdm's disable: True (no bar) unless progress is asked for on rank 0 (under torchrun every rank would
    draw one); else None, which draws only when stderr is a terminal, so logs and pipes get no bar."""
    return True if not progress or rank != 0 else None


# -----------------------------------------------------------------------------
# bits per byte

def token_bytes(tokenizer, vocab_size):
    """(vocab_size,) int64: the UTF-8 bytes each token id stands for; 0 for the end-of-text token (GPT-2's, a
    trained BPE's) and for ids past the tokenizer's vocabulary (a padded embedding), whose targets bpb leaves out."""
    lengths = np.zeros(vocab_size, dtype=np.int64)
    for i in range(min(tokenizer.vocab_size, vocab_size)):
        if i != tokenizer.eot_token:
            lengths[i] = len(tokenizer.id_bytes(i))
    return torch.from_numpy(lengths)


@torch.no_grad()
def bits_per_byte(model, *, data_dir, tokenizer, eval_iters, batch_size, seed, ctx, device, rank=0, world_size=1,
                  progress=False):
    """Bits per byte, and the per-token loss, over the same eval_iters fixed val batches train.py's val loss
    uses (dataloader.eval_batch): the summed loss in nats of the targets that stand for text, over ln 2 times
    the bytes of that text. progress=True: a bar of rank 0's batches, as score_choices draws."""
    lengths = token_bytes(tokenizer, model.config.vocab_size).to(device)
    block_size = model.config.block_size
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # nats, bytes, tokens (of the counted targets)
    with eval_mode(model):
        for k in tqdm(range(rank, eval_iters, world_size), desc='bpb', unit='batch', disable=bar_off(progress, rank)):
            x, y = to_device(*eval_batch(data_dir, 'val', seed, k, batch_size, block_size, model.config.vocab_size),
                             device)
            with ctx:
                logits, _ = model(x, all_logits=True)
            targets = y.view(-1).clamp(min=0)  # -1 (masked) read as 0 here, and left out by `counted`
            nats = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets, reduction='none')
            counted = (y.view(-1) >= 0) & (lengths[targets] > 0)
            totals += torch.stack([nats[counted].double().sum(), lengths[targets[counted]].double().sum(),
                                   counted.double().sum()])
    if world_size > 1:
        torch.distributed.all_reduce(totals)
    nats, n_bytes, n_tokens = totals.tolist()
    return {'bpb': nats / math.log(2) / n_bytes, 'loss': nats / n_tokens, 'tokens': int(n_tokens),
            'bytes': int(n_bytes)}


# -----------------------------------------------------------------------------
if __name__ == '__main__':
    import json
    import time

    from torch.distributed import destroy_process_group

    import hardware
    from checkpoint import load_model, tokenizer_for, trained_dataset
    from configurator import configure, require_positive
    from dataloader import check_dataset
    from tokenizer import dataset_dir

    init_from = 'resume'  # 'resume' (out_dir/ckpt.pt), another out_dir, a GPT-2 name, or a local HF directory
    out_dir = 'out'  # for init_from='resume'
    task = 'hellaswag'  # 'hellaswag' (data/hellaswag/val.jsonl), a multiple-choice .jsonl file, or 'bpb'
    max_examples = 0  # score the first this many examples only (0 = all)
    batch_size = 8  # examples per forward (times their endings); for bpb, sequences per batch
    dataset = ''  # bpb: the prepared dataset whose val split is measured ('' = the one the model trained on)
    eval_iters = 200  # bpb: batches of the val split (the same fixed batches as train.py's val loss)
    out_file = ''  # also write the result as JSON here
    backend = 'auto'  # DDP under torchrun: 'nccl' on CUDA, 'gloo' on CPU
    device = 'auto'
    dtype = 'auto'
    seed = 1337
    configure(globals())
    require_positive(globals(), 'batch_size', 'eval_iters')

    hw = hardware.setup(device, dtype)
    rank, _, world_size, device = hardware.init_distributed(hw.device, backend)  # under torchrun; else 0, 0, 1
    model, checkpoint = load_model(init_from, out_dir, dropout=0.0)
    model.eval().to(device)
    tokenizer = tokenizer_for(checkpoint, init_from)
    name = f"{out_dir}/ckpt.pt" if init_from == 'resume' else init_from
    t0 = time.time()
    if task == 'bpb':
        dataset = dataset or trained_dataset(checkpoint)
        if not dataset:
            raise UserError(f"{name} names no dataset: pass --dataset=<a prepared dataset> for bpb")
        result = bits_per_byte(model, data_dir=check_dataset(dataset, model.config.block_size), tokenizer=tokenizer,
                               eval_iters=eval_iters, batch_size=batch_size, seed=seed, ctx=hw.ctx, device=device,
                               rank=rank, world_size=world_size, progress=True)
        summary = (f"bpb {result['bpb']:.4f} (loss {result['loss']:.4f} nats/token, perplexity "
                   f"{math.exp(result['loss']):.2f}) on {result['tokens']:,} tokens ({result['bytes']:,} bytes) of "
                   f"{dataset}'s val split")
    else:
        path = os.path.join(dataset_dir('hellaswag'), 'val.jsonl') if task == 'hellaswag' else task
        examples = read_choices(path, tokenizer, model.config.block_size)
        examples = examples[:max_examples] if max_examples > 0 else examples
        result = score_choices(model, examples, batch_size=batch_size, ctx=hw.ctx, device=device, rank=rank,
                               world_size=world_size, vocab_size=tokenizer.vocab_size, progress=True)
        summary = (f"{task}: acc {result['acc']:.4f}, acc_norm {result['acc_norm']:.4f} on {result['examples']:,} "
                   f"examples")
    seconds = time.time() - t0
    if rank == 0:
        print(f"{name}: {summary} ({seconds:.1f} s)")
        if out_file:
            with open(out_file, 'w') as f:
                json.dump({'init_from': name, 'task': task, **result, 'seconds': seconds}, f, indent=1)
    if torch.distributed.is_initialized():
        destroy_process_group()
