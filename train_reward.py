"""
Train a reward model: a GPT with a scalar head (ppo.ScalarHeadGPT) on preference pairs, with the
Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected)) (Christiano et al. 2017, InstructGPT), where
r is the head's scalar at the completion's end-of-text ('last') or its sum over the completion's tokens ('sum'),
see rewards.py. rlhf.py then uses it with --reward=<this out_dir>.

$ python data/preferences/prepare.py                        # pairs of the model's samples, labelled by VADER
$ python train_reward.py config/train_reward_shakespeare.py  # -> out-reward-shakespeare/ckpt.pt
$ python rlhf.py config/rlhf_happy_shakespeare.py --reward=out-reward-shakespeare

Preference files are jsonl, one {"prompt": ..., "chosen": ..., "rejected": ...} per line. The trunk
starts from a language model, as in InstructGPT (init_from: an out_dir holding ckpt.pt, a GPT-2 name or
a local HF directory), and keeps its vocabulary; or from scratch with a dataset's vocabulary. A reward
needs not share the policy's vocabulary: it reads text. Every eval_interval steps the loss and accuracy
(the fraction of pairs ranked the right way round) on all held-out pairs go to stdout and log.jsonl, with the
accuracy on each held-out file where val_file names several.
"""
import os
import time

import numpy as np
import torch

import hardware
import loop
from checkpoint import (claim_out_dir, load_model, make_checkpoint, new_model, save_checkpoint, tokenizer_for,
                        trained_dataset)
from configurator import UserError, configure, require_positive
from ppo import ScalarHeadGPT
from rewards import REDUCTIONS, bradley_terry_loss, completion_scores, encode_completion, load_preferences
from tokenizer import for_dataset

# -----------------------------------------------------------------------------
out_dir = 'out-reward'
# 'scratch', or a language model: an out_dir holding ckpt.pt, a GPT-2 name or a local HF directory
init_from = 'scratch'
# a model from scratch (init_from='scratch'): the vocabulary of `dataset` (its meta.pkl, else GPT-2 BPE)
dataset = 'shakespeare'
n_layer = 1
n_head = 2
n_embd = 64
block_size = 64
bias = False
train_file = 'data/preferences/train.jsonl'  # several files: comma-separated, their pairs together
val_file = 'data/preferences/val.jsonl'  # held-out pairs: accuracy is measured here
reward_reduction = 'sum'  # 'last': the scalar at the end-of-text (Stiennon et al.); 'sum': over the completion's tokens
eval_interval = 100
log_interval = 10
wandb_log = False
wandb_project = 'reward'
wandb_run_name = 'bt'
batch_size = 32  # pairs per step
max_iters = 500
learning_rate = 3e-4
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0
dropout = 0.1
device = 'cpu'  # 'auto', 'cpu', 'cuda', ...
dtype = 'float32'  # 'float32', 'bfloat16', 'float16' or 'auto'
seed = 1337
# -----------------------------------------------------------------------------
config = configure(globals())
# -----------------------------------------------------------------------------

hw = hardware.setup(device, dtype)
device, device_type, ctx = hw.device, hw.device_type, hw.ctx
require_positive(globals(), 'batch_size', 'max_iters', 'eval_interval', 'log_interval')
if reward_reduction not in REDUCTIONS:
    raise UserError(f"reward_reduction must be one of {', '.join(REDUCTIONS)}, got '{reward_reduction}'")
torch.manual_seed(seed)
rng = np.random.default_rng(seed)
if wandb_log:
    loop.import_wandb()  # a missing wandb is one line before any work

# the trunk and its vocabulary
if init_from == 'scratch':
    tokenizer = for_dataset(dataset)
    gpt = new_model(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=bias,
                    vocab_size=tokenizer.vocab_size, dropout=dropout)
else:
    gpt, start_checkpoint = load_model(init_from, dropout=dropout)
    tokenizer = tokenizer_for(start_checkpoint, init_from)
    dataset = trained_dataset(start_checkpoint)
config['dataset'] = dataset  # where tokenizer_for finds the vocabulary again
model = ScalarHeadGPT(gpt).to(device)
block_size = gpt.config.block_size


def encode_pairs(paths):
    """Token lists (prompt, chosen, rejected) of every pair in the preference files (comma-separated paths), as
    rewards.encode_completion reads them: a prompt too long for the context loses its oldest tokens, counted and
    reported. Also returns {path: (first, end)}, where each file's pairs lie in that list."""
    pairs, spans = [], {}
    for path in (p.strip() for p in paths.split(',')):
        encoded = encode_file(path)
        spans[path] = (len(pairs), len(pairs) + len(encoded))
        pairs += encoded
    return pairs, spans


def encode_file(path):
    encoded, cut = [], 0
    for n, pair in enumerate(load_preferences(path), 1):
        if pair['chosen'] == pair['rejected']:  # an empty one is fine: a policy can write one, and should lose
            raise UserError(f"{path}:{n}: chosen and rejected are the same completion: a pair must prefer one")
        try:
            (prompt, chosen, a), (prompt_r, rejected, b) = (
                encode_completion(tokenizer, pair['prompt'], pair[k], reward_reduction, block_size)
                for k in ('chosen', 'rejected'))
        except UserError as e:
            raise UserError(f"{path}:{n}: {e}") from None
        cut += max(a, b) > 0
        encoded.append((min(prompt, prompt_r, key=len), chosen, rejected))  # one prompt that fits with both
    if cut:
        print(f"{path}: {cut} of {len(encoded)} prompts were longer than the context of {block_size} with their "
              f"completions, and lost their oldest tokens")
    return encoded


def pair_scores(model, pairs):
    """The reward of each pair's chosen and of its rejected completion: two (B,) tensors."""
    with ctx:
        chosen = completion_scores(model, [(p, c) for p, c, _ in pairs], reward_reduction)
        rejected = completion_scores(model, [(p, r) for p, _, r in pairs], reward_reduction)
    return chosen, rejected


@torch.no_grad()
def evaluate():
    """Loss and accuracy over every held-out pair, and the accuracy on each held-out file's pairs."""
    model.eval()
    total_loss, hits = 0.0, []
    for i in range(0, len(val_pairs), batch_size):
        chunk = val_pairs[i:i + batch_size]
        chosen, rejected = pair_scores(model, chunk)
        total_loss += bradley_terry_loss(chosen, rejected)[0].item() * len(chunk)
        hits.append(chosen > rejected)
    model.train()
    hits = torch.cat(hits).float()  # (len(val_pairs),) 1 where the pair is ranked the right way round
    per_file = {path: hits[a:b].mean().item() for path, (a, b) in val_spans.items()}
    return total_loss / len(val_pairs), hits.mean().item(), per_file


train_pairs, _ = encode_pairs(train_file)
val_pairs, val_spans = encode_pairs(val_file)
print(f"{len(train_pairs)} training pairs ({train_file}), {len(val_pairs)} held-out pairs ({val_file})")

optimizer = gpt.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type)
optimizer.add_param_group({'params': list(model.head.parameters()), 'weight_decay': 0.0})
out_dir_lock = claim_out_dir(out_dir)  # writable, and no second run writing it
log = loop.RunLog(os.path.join(out_dir, 'log.jsonl'), keep_before=0,
                  wandb=(wandb_project, wandb_run_name, config) if wandb_log else None)

start_time = time.time()
model.train()
for iter_num in range(max_iters + 1):
    if iter_num % eval_interval == 0 or iter_num == max_iters:
        val_loss, val_acc, file_acc = evaluate()
        each = (' (' + ', '.join(f"{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)} {acc:.3f}"
                                 for path, acc in file_acc.items()) + ')') if len(file_acc) > 1 else ''
        print(f"step {iter_num}: held-out loss {val_loss:.4f}, accuracy {val_acc:.3f}{each} "
              f"({time.time() - start_time:.1f}s)")
        log.write({'iter': iter_num, 'val_loss': val_loss, 'val_accuracy': val_acc,
                   **({'val_accuracy_by_file': file_acc} if len(file_acc) > 1 else {}),
                   'elapsed_s': time.time() - start_time})
    if iter_num == max_iters:
        break
    batch = [train_pairs[i] for i in rng.integers(0, len(train_pairs), size=batch_size)]
    loss, acc = bradley_terry_loss(*pair_scores(model, batch))
    loss.backward()
    if grad_clip > 0.0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if not np.isfinite(loss.item()):
        raise UserError(f"the loss became {loss.item()} at iter {iter_num}: lower learning_rate")
    if iter_num % log_interval == 0:
        print(f"iter {iter_num}: loss {loss.item():.4f}, batch accuracy {acc.item():.3f}")

# 'model' stays a plain GPT; the reward head goes beside it
save_checkpoint(make_checkpoint(gpt, optimizer, max_iters, val_loss, config, tokenizer, val_accuracy=val_acc,
                                scalar_head=model.head.state_dict(), scalar_head_role='reward',
                                reward_reduction=reward_reduction),
                os.path.join(out_dir, 'ckpt.pt'))
print(f"held-out accuracy {val_acc:.3f} on {len(val_pairs)} pairs{each}; saved the reward model to {out_dir}/ckpt.pt")
