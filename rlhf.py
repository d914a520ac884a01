"""
Reinforcement learning from a reward: PPO with a KL leash to the starting model, as in Ziegler et al.
2019 and InstructGPT (minRLHF's demos, in this repo's shape). The HappyGPT demo, offline on a CPU:

$ python data/shakespeare_char/prepare.py
$ python train.py config/train_shakespeare_char_cpu.py      # the starting model
$ python rlhf.py config/rlhf_happy_shakespeare.py           # PPO toward cheerful text, then an evaluation
$ python rlhf.py config/rlhf_happy_shakespeare.py --init_from=resume  # go on after a stop (Ctrl-C, SIGTERM)
$ python rlhf.py config/rlhf_happy_shakespeare.py --eval_only=True   # evaluate the saved policy again

Summarization from human feedback (Stiennon et al. 2020), PPO from an SFT model against a reward model:
$ python rlhf.py config/rlhf_tldr.py                    # GPT-2 on Reddit TL;DR (data/tldr; README)

Each iteration: batch_size prompts -> completions by the cached generate, all prompts together (left-padded),
each ending at end-of-text -> a reward per completion (rewards.py, batched) and a per-token KL penalty -> GAE ->
ppo_epochs epochs of minibatches (gradients accumulated over micro-batches) of the clipped policy and value
losses (ppo.py). out_dir/ckpt.pt is the policy as an ordinary checkpoint (sample.py and train.py read it; the
value head is kept apart, under 'scalar_head'); out_dir/log.jsonl has one line per iteration; out_dir/eval.json
compares fresh samples of the policy and of the start on the same prompts (reward, KL, length, ROUGE-L against
the references of eval_prompt_file).
"""
import copy
import json
import os
import time

import numpy as np
import torch
from tqdm import tqdm

import dataloader
import hardware
import loop
import ppo
from checkpoint import (check_new_run, check_vocabulary, claim_out_dir, load_checkpoint, load_model, make_checkpoint,
                        save_checkpoint, tokenizer_for, trained_dataset)
from configurator import UserError, configure, require_positive
from rewards import ReferenceRougeL, RewardModel, get_reward, rouge_l

# -----------------------------------------------------------------------------
# I/O
out_dir = 'out-rlhf'
# the starting policy: an out_dir holding ckpt.pt, a GPT-2 name or a local HF dir; 'resume' continues the run in
# out_dir (against the start it recorded)
init_from = 'out-shakespeare-char-cpu'
eval_only = False  # if True, only evaluate out_dir/ckpt.pt against init_from
overwrite = False  # if True, a new run (init_from not 'resume') may replace the policy already in out_dir
log_interval = 1
save_interval = 50  # also save ckpt.pt every this many iterations (0 = only at the end)
wandb_log = False
wandb_project = 'rlhf'
wandb_run_name = 'ppo'
# prompts and completions
dataset = ''  # prompts are windows of its train split, val loss is measured on its val split; '' = the policy's own
prompt_file = ''  # instead: a .txt (one prompt per line) or .jsonl ({"prompt": ...} per line) file of prompts
eval_prompt_file = ''  # held-out prompts for the evaluation (its first eval_samples), with {"completion": ...}
# references in a .jsonl for ROUGE-L; '' = drawn like training's, from the val split or from prompt_file
prompt_len = 16  # tokens per prompt window cut from the dataset
max_new_tokens = 48  # the longest completion (a completion ends at end-of-text, where the vocabulary has one)
# reward (rewards.py): 'sentiment', 'count:<chars>', the out_dir of a reward model from train_reward.py, or 'rouge_l':
# ROUGE-L against the references of prompt_file and eval_prompt_file (.jsonl with a "completion" per line), the
# ground truth a reward model stands in for, so PPO against it shows what PPO can reach at all; several,
# comma-separated, score their mean (reward models of different seeds: less for the policy to exploit)
reward = 'sentiment'
# PPO sees (reward - mean) / std, both measured on the starting model's samples before training (Ziegler et al.
# 2019): a reward model's scale is arbitrary, and without this its raw scores, not target_kl, decide how far the
# policy moves. 'auto' = for reward models, rouge_l and means of them (sentiment and count have a fixed scale),
# 'always', 'never'
normalize_reward = 'auto'
# PPO
max_iters = 200  # PPO iterations: one rollout batch and its updates each
batch_size = 64  # rollouts per iteration
minibatch_size = 16  # rollouts per optimizer step
micro_batch_size = 0  # rollouts per forward/backward (gradient accumulation over a minibatch); 0 = minibatch_size
ppo_epochs = 4  # passes over each rollout batch
learning_rate = 1e-4
decay_lr = True  # cosine decay to min_lr over max_iters: the last iterations settle instead of pushing the KL on
min_lr = 1e-5
weight_decay = 0.0  # decay pulls toward 0, not toward the reference: the KL penalty is the regularizer here
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0
cliprange = 0.2  # the policy ratio's clip range
cliprange_value = 0.2  # how far the value may move from its rollout-time value before its loss is clipped
vf_coef = 0.1  # weight of the value loss (the value head shares the policy's trunk)
gamma = 1.0
lam = 0.95
init_kl_coef = 0.2  # beta, the KL penalty's starting coefficient
target_kl = 6.0  # the adaptive controller steers the KL per completion (nats, summed over tokens) toward this
kl_horizon = 10000  # rollouts over which beta may change by at most 20%
# evaluation (after training, or with eval_only)
eval_samples = 256  # fresh completions from the start and from the policy, same prompts and seed
eval_iters = 200  # val-loss batches of the dataset's val split
eval_batch_size = 12
reward_batch_size = 32  # texts per forward pass of a reward model
# system
device = 'cpu'  # 'auto', 'cpu', 'cuda', ...
dtype = 'float32'  # PPO's probability ratios are taken between two forwards: keep them exact
seed = 1337
# -----------------------------------------------------------------------------
config = configure(globals())
# -----------------------------------------------------------------------------

hw = hardware.setup(device, dtype)
device, device_type, ctx = hw.device, hw.device_type, hw.ctx
require_positive(globals(), 'max_iters', 'batch_size', 'minibatch_size', 'ppo_epochs', 'prompt_len', 'max_new_tokens',
                 'eval_samples', 'eval_iters', 'eval_batch_size', 'log_interval', 'reward_batch_size')
micro_batch_size = micro_batch_size or minibatch_size
if not 0 < micro_batch_size <= minibatch_size:
    raise UserError(f"micro_batch_size ({micro_batch_size}) must be between 1 and minibatch_size ({minibatch_size})")
if normalize_reward not in ('auto', 'always', 'never'):
    raise UserError(f"normalize_reward must be 'auto', 'always' or 'never', got '{normalize_reward}'")
torch.manual_seed(seed)
rng = np.random.default_rng(seed)
if not eval_only:  # a new run must not overwrite a trained policy: resume it, or pick another out_dir
    check_new_run(out_dir, init_from, overwrite)
reward_fn = get_reward(reward, device, reward_batch_size)  # first: a misspelt reward should not wait for the models
reward_parts = getattr(reward_fn, 'members', [reward_fn])  # the rewards it is the mean of, or itself
if wandb_log:
    loop.import_wandb()  # a missing wandb is one line before any work

# a resumed run goes on from out_dir/ckpt.pt (policy, value head, optimizers, KL coefficient, reward normalization,
# iteration, random state), against the reference it started from, which the checkpoint's config names
resumed = None
if init_from == 'resume':
    resumed = load_checkpoint(os.path.join(out_dir, 'ckpt.pt'))
    if 'value_optimizer' not in resumed and not eval_only:
        raise UserError(f"{out_dir}/ckpt.pt holds no PPO run to resume (no value head optimizer: a language model, "
                        f"or a policy saved before rlhf.py could resume): start a new run from it into another "
                        f"--out_dir with --init_from={out_dir}")
    init_from = config['init_from'] = resumed['config']['init_from']
    print(f"resuming {out_dir}/ckpt.pt (iteration {resumed['iter_num']}), started from {init_from}")


# the starting model, frozen as the reference, and the policy (a copy of it with a value head)
reference, start_checkpoint = load_model(init_from, dropout=0.0)  # no dropout: PPO compares two forwards' probabilities
reference.to(device).eval().requires_grad_(False)
tokenizer = tokenizer_for(start_checkpoint, init_from)
stop_token = tokenizer.eot_token  # completions end at end-of-text (GPT-2 BPE); a character vocabulary has none
if eval_only:
    if not os.path.isfile(os.path.join(out_dir, 'ckpt.pt')):
        raise UserError(f"eval_only: no policy at {out_dir}/ckpt.pt; run PPO first (without --eval_only)")
    policy, policy_checkpoint = load_model('resume', out_dir, dropout=0.0)
    model = ppo.ScalarHeadGPT(policy)
else:
    model = ppo.ScalarHeadGPT(copy.deepcopy(reference).requires_grad_(True))
    if resumed is not None:
        try:
            model.gpt.load_state_dict(resumed['model'])
            model.head.load_state_dict(resumed['scalar_head'])
        except RuntimeError as e:
            raise UserError(f"{out_dir}/ckpt.pt does not fit the model it started from, {init_from} (replaced since?): "
                            f"{str(e).splitlines()[0]}") from None
model.to(device)
block_size = reference.config.block_size

# the prompts: windows of the dataset (train split for PPO, val split for the evaluation), or a file
dataset = dataset or trained_dataset(start_checkpoint)
config['dataset'] = dataset  # what tokenizer_for reads back from the saved checkpoint
data_dir = None
if dataset:
    data_dir = dataloader.check_dataset(dataset, block_size)
    check_vocabulary(tokenizer, dataset, f"the policy ({init_from})")
elif not prompt_file:
    raise UserError(f"no prompts: init_from={init_from} names no dataset, so set dataset=<a prepared dataset> "
                    f"or prompt_file=<a .txt or .jsonl file of prompts>")


if prompt_file:
    file_prompts, file_references = ppo.read_prompt_file(prompt_file, tokenizer, max_new_tokens, block_size)
elif prompt_len + max_new_tokens > block_size:
    raise UserError(f"a prompt of prompt_len={prompt_len} tokens plus max_new_tokens={max_new_tokens} is longer than "
                    f"the model's context of {block_size}: lower prompt_len or max_new_tokens")
eval_prompts, eval_references = (ppo.read_prompt_file(eval_prompt_file, tokenizer, max_new_tokens, block_size)
                                  if eval_prompt_file else (None, None))
files = [(prompt_file, file_prompts, file_references) if prompt_file else ('no prompt_file', None, None)]
if eval_prompt_file:
    files.append((eval_prompt_file, eval_prompts, eval_references))
for part in reward_parts:
    if isinstance(part, ReferenceRougeL):  # the ground truth: every prompt PPO or the evaluation draws needs one
        for path, prompts, references in files:
            if references is None:
                raise UserError(f"reward 'rouge_l' scores against reference completions: prompt_file and "
                                f"eval_prompt_file must be .jsonl files with a \"completion\" on every line ({path})")
            part.add([tokenizer.decode(p) for p in prompts], references)
    if isinstance(part, RewardModel):  # it must read every text the policy can write, checked before any work
        part.check_reads(tokenizer, f"the policy ({init_from})")


def draw_prompts(count, split, generator):
    if prompt_file:
        return [file_prompts[i] for i in generator.integers(0, len(file_prompts), size=count)]
    return ppo.prompt_windows(dataloader.open_split(data_dir, split), count, prompt_len, generator)


# -----------------------------------------------------------------------------
# one PPO iteration

def sample(gpt, prompts):
    """gpt's completions of prompts (token lists), ending at end-of-text: seq (B, T) and starts (B,) as
    ppo.generate_completions returns them, mask (B, N) over each completion's tokens, the prompt texts and the
    completion texts (B each)."""
    seq, starts = ppo.generate_completions(gpt, prompts, max_new_tokens, device, stop_token, tokenizer.vocab_size)
    mask = ppo.completion_mask(seq, starts, max_new_tokens, stop_token)
    texts = ppo.completion_texts(tokenizer, seq, starts, max_new_tokens, mask)
    return seq, starts, mask, [tokenizer.decode(p) for p in prompts], texts


def summary_lengths(seq, starts, mask):
    """Tokens (B,) of each completion under mask, its end-of-text not counted."""
    tokens = seq.gather(1, ppo.completion_positions(starts, max_new_tokens) + 1)  # (B, N)
    return (mask if stop_token is None else mask * (tokens != stop_token)).sum(1)


def rewards_of(prompt_texts, texts):
    """The reward of each completion, batched (rewards.py): a (B,) tensor."""
    return torch.tensor(reward_fn(texts, prompt_texts), dtype=torch.float, device=device)


@torch.no_grad()
def reward_statistics(n):
    """(mean, std) of the reward over n completions of the starting model: the shift and scale PPO's rewards
    are normalized with. Drawn from a generator of its own, so training's prompts do not depend on it."""
    generator = np.random.default_rng([seed, 2])
    scores = []
    for i in range(0, n, batch_size):
        _, _, _, prompt_texts, texts = sample(reference, draw_prompts(min(batch_size, n - i), 'train', generator))
        scores.append(rewards_of(prompt_texts, texts))
    scores = torch.cat(scores)
    return scores.mean().item(), max(scores.std().item(), 1e-8)


@torch.no_grad()
def rollout(kl_coef):
    """Sample completions for a batch of prompts and score them: everything the updates need, (B, N) each."""
    seq, starts, mask, prompt_texts, texts = sample(model.gpt, draw_prompts(batch_size, 'train', rng))
    scores = rewards_of(prompt_texts, texts)
    pos = ppo.completion_positions(starts, max_new_tokens)  # (B, N)
    tokens = seq.gather(1, pos + 1)  # (B, N) the sampled completion tokens
    logp, values, entropy, ref_logp = [], [], [], []
    with ctx:
        for mb in torch.arange(batch_size).split(micro_batch_size):
            logits, v = model(seq[mb], pos[mb])
            lp, ent = ppo.token_logprobs(logits, tokens[mb])
            logp.append(lp)
            values.append(v.float())
            entropy.append(ent)
            ref_logp.append(ppo.completion_logprobs(reference, seq[mb], starts[mb], max_new_tokens))
    logp, values, entropy, ref_logp = (torch.cat(t) for t in (logp, values, entropy, ref_logp))
    rewards, kl = ppo.kl_penalized_rewards((scores - reward_shift) / reward_scale, logp, ref_logp, kl_coef, mask)
    advantages, returns = ppo.gae(rewards, values, gamma, lam, mask)
    return dict(seq=seq, pos=pos, tokens=tokens, mask=mask, logp=logp, values=values,
                advantages=ppo.whiten(advantages, mask), returns=returns, scores=scores, kl=kl.sum(1),
                entropy=ppo.masked_mean(entropy, mask), length=summary_lengths(seq, starts, mask))


def update(batch, lr):
    """ppo_epochs passes of minibatches over one rollout batch, one optimizer step per minibatch (its gradients
    accumulated over micro-batches); returns the mean losses and clip fraction."""
    for opt in (optimizer, value_optimizer):
        loop.set_lr(opt, lr)
    model.train()
    stats = []
    for _ in range(ppo_epochs):
        for mb in torch.randperm(batch_size).split(minibatch_size):
            stats.append(ppo.accumulate_gradients(model, batch, mb.to(device), micro_batch_size, cliprange=cliprange,
                                                  cliprange_value=cliprange_value, vf_coef=vf_coef, ctx=ctx))
            if grad_clip > 0.0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            value_optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value_optimizer.zero_grad(set_to_none=True)
    model.eval()
    return torch.stack(stats).mean(0).tolist()


# -----------------------------------------------------------------------------
# evaluation: fresh samples from the start and from the policy on the same prompts: reward, KL between them,
# summary length, ROUGE-L against references (eval_prompt_file), val loss

@torch.no_grad()
def evaluate(ppo_minutes=None):
    if eval_prompts is not None:  # the same held-out posts on every evaluation, in file order
        prompts = eval_prompts[:eval_samples]
        references = eval_references[:eval_samples] if eval_references is not None else None
    else:
        generator = np.random.default_rng([seed, 1])  # the same prompts for both models, apart from training's
        prompts, references = draw_prompts(eval_samples, 'val', generator), None
    out = {'eval_samples': len(prompts), 'target_kl': target_kl, 'ppo_minutes': ppo_minutes}
    samples = {}
    for name, gpt in (('start', reference), ('policy', model.gpt)):
        torch.manual_seed(seed)  # the same sampling noise for both
        texts, scores, kls, lengths = [], [], [], []
        # a bar per model on stderr, drawn only when it is a terminal (none in logs and pipes)
        with tqdm(total=len(prompts), desc=f'eval: {name} samples', unit='sample', disable=None) as bar:
            for i in range(0, len(prompts), batch_size):
                if stopper.requested:  # the policy is already saved: only the evaluation is cut short
                    print(f"stopped by signal during the evaluation; evaluate {out_dir}/ckpt.pt again with "
                          f"--eval_only=True")
                    raise SystemExit(130)
                seq, starts, mask, prompt_texts, chunk_texts = sample(gpt, prompts[i:i + batch_size])
                texts += zip(prompt_texts, chunk_texts)
                scores += reward_fn(chunk_texts, prompt_texts)
                lengths += summary_lengths(seq, starts, mask).tolist()
                if name == 'policy':  # KL(policy || start) per completion, on the policy's own samples
                    with ctx:
                        logp = ppo.completion_logprobs(gpt, seq, starts, max_new_tokens)
                        ref_logp = ppo.completion_logprobs(reference, seq, starts, max_new_tokens)
                    kls += ((logp - ref_logp) * mask).sum(1).tolist()
                bar.update(len(chunk_texts))
        out[f'reward_{name}'] = float(np.mean(scores))
        out[f'length_{name}'] = float(np.mean(lengths))
        out[f'length_median_{name}'] = float(np.median(lengths))
        if references is not None:
            out[f'rouge_l_{name}'] = float(np.mean(rouge_l([t for _, t in texts], references)))
        samples[name] = texts
        if data_dir is not None:
            losses = loop.estimate_loss(gpt, data_dir=data_dir, eval_iters=eval_iters, batch_size=eval_batch_size,
                                        block_size=block_size, vocab_size=gpt.config.vocab_size, seed=seed, ctx=ctx,
                                        device=device)
            out[f'val_loss_{name}'] = losses['val']
    out['kl'] = float(np.mean(kls))
    for name in ('start', 'policy'):
        print(f"--- {name} samples (prompt | completion)")
        for prompt, text in samples[name][:4]:
            print(repr(prompt), '|', repr(text))
    out['samples'] = {name: [p + ' | ' + t for p, t in samples[name][:8]] for name in samples}
    print(f"eval on {len(prompts)} fresh samples: mean reward {out['reward_start']:.3f} -> {out['reward_policy']:.3f} "
          f"({out['reward_policy'] - out['reward_start']:+.3f}); KL to the start {out['kl']:.2f} nats per completion "
          f"(target_kl {target_kl}); length {out['length_start']:.1f} -> {out['length_policy']:.1f} tokens")
    if references is not None:
        print(f"ROUGE-L against the references: {out['rouge_l_start']:.4f} -> {out['rouge_l_policy']:.4f}")
    if data_dir is not None:
        print(f"val loss on {dataset}: {out['val_loss_start']:.4f} -> {out['val_loss_policy']:.4f} "
              f"({out['val_loss_policy'] - out['val_loss_start']:+.4f})")
    truncated = max((part.truncated for part in reward_parts if isinstance(part, RewardModel)), default=0)
    if truncated:
        out['reward_prompts_truncated'] = truncated
    # judged as a PPO policy only if it is one (not, e.g., an SFT model scored against the untrained one)
    out['warnings'] = verdict(out, ppo_policy=not eval_only or policy_checkpoint.get('scalar_head_role') == 'value')
    with open(os.path.join(out_dir, 'eval.json'), 'w') as f:
        json.dump(out, f, indent=1)
    return out


def verdict(out, ppo_policy=True):
    """The end-of-run line: the policy against the start on what the reward stands in for (ROUGE-L against the
    references, where there are some), the summaries' median length and the KL; and, for a PPO policy, one warning
    line each where it has overfitted the reward model (a higher reward, but worse or collapsed summaries) or the KL
    leash did not hold. Returns the warnings (also in eval.json)."""
    line = f"the policy against the start: reward {out['reward_start']:.3f} -> {out['reward_policy']:.3f}"
    if 'rouge_l_start' in out:
        line += f", ROUGE-L {out['rouge_l_start']:.4f} -> {out['rouge_l_policy']:.4f}"
    print(line + f", median length {out['length_median_start']:g} -> {out['length_median_policy']:g} tokens, "
                 f"KL {out['kl']:.2f} nats (target_kl {target_kl:g})")
    if not ppo_policy:
        return []
    fell = []
    if 'rouge_l_start' in out and out['rouge_l_policy'] < out['rouge_l_start']:
        fell.append('ROUGE-L fell')
    if out['length_median_policy'] < 0.5 * out['length_median_start']:
        fell.append('the completions collapsed to less than half their median length')
    elif out['length_median_policy'] > 2 * out['length_median_start']:
        fell.append('the completions grew past twice their median length')
    warnings = []
    if fell:
        warnings.append(f"{' and '.join(fell)}: the policy has overfitted the reward model (it found what the "
                        f"reward model scores well, not better text); lower learning_rate or max_iters, or raise "
                        f"init_kl_coef")
    if out['kl'] > 1.5 * target_kl:
        warnings.append(f"the KL to the start, {out['kl']:.2f} nats, is past 1.5x target_kl ({target_kl:g}): the "
                        f"leash did not hold; lower learning_rate or kl_horizon, or raise init_kl_coef")
    for warning in warnings:
        print(f"warning: {warning}")
    return warnings


stopper = loop.GracefulStop()  # Ctrl-C / SIGTERM: finish the iteration (or evaluation chunk), save, exit
if eval_only:
    os.makedirs(out_dir, exist_ok=True)
    evaluate()
    raise SystemExit(0)

# -----------------------------------------------------------------------------
# training

# two optimizers: the GPT's exactly as train.py builds it, so ckpt['optimizer'] loads there, and the head's
optimizer = model.gpt.configure_optimizers(weight_decay, learning_rate, (beta1, beta2), device_type)
value_optimizer = torch.optim.AdamW(model.head.parameters(), lr=learning_rate, betas=(beta1, beta2), weight_decay=0.0)
kl_ctl = ppo.AdaptiveKLController(init_kl_coef, target_kl, kl_horizon)
best_val_loss = (start_checkpoint or {}).get('best_val_loss', 1e9)
reward_shift, reward_scale = 0.0, 1.0
start_iter = 0
if resumed is not None:
    optimizer.load_state_dict(resumed['optimizer'])
    value_optimizer.load_state_dict(resumed['value_optimizer'])
    kl_ctl.value = resumed['kl_coef']
    reward_shift, reward_scale = resumed['reward_normalization']['mean'], resumed['reward_normalization']['std']
    best_val_loss, start_iter = resumed['best_val_loss'], resumed['iter_num']
# everything is checked: only now is out_dir written to (and its log.jsonl only at this run's first record)
out_dir_lock = claim_out_dir(out_dir)  # writable, and no second run writing it
log = loop.RunLog(os.path.join(out_dir, 'log.jsonl'), keep_before=start_iter + 1,
                  wandb=(wandb_project, wandb_run_name, config) if wandb_log else None)


def save(iter_num):
    """The policy as an ordinary checkpoint (iter_num counts PPO iterations); the value head beside it, since
    sample.py builds a plain GPT from 'model'."""
    save_checkpoint(make_checkpoint(model.gpt, optimizer, iter_num, best_val_loss, config, tokenizer,
                                    scalar_head=model.head.state_dict(), scalar_head_role='value',
                                    kl_coef=kl_ctl.value, value_optimizer=value_optimizer.state_dict(),
                                    reward_normalization={'mean': reward_shift, 'std': reward_scale},
                                    rng=random_state()),
                    os.path.join(out_dir, 'ckpt.pt'))


def random_state():
    """Where the random streams stand (the prompts' numpy generator; torch's, which samples and shuffles): a
    resumed run draws on from here exactly as the uninterrupted run would have."""
    state = {'numpy': rng.bit_generator.state, 'torch': torch.get_rng_state()}
    if device_type == 'cuda':
        state['cuda'] = torch.cuda.get_rng_state(device)
    return state


if resumed is not None:
    rng.bit_generator.state = resumed['rng']['numpy']
    torch.set_rng_state(resumed['rng']['torch'])
    if device_type == 'cuda' and 'cuda' in resumed['rng']:
        torch.cuda.set_rng_state(resumed['rng']['cuda'], device)
    print(f"PPO resumed at iteration {start_iter} of {max_iters}")
elif normalize_reward == 'always' or (
        normalize_reward == 'auto' and all(isinstance(part, (RewardModel, ReferenceRougeL)) for part in reward_parts)):
    reward_shift, reward_scale = reward_statistics(2 * batch_size)
    print(f"the reward on {2 * batch_size} samples of the start: mean {reward_shift:.4f}, std {reward_scale:.4f}; "
          f"PPO sees (reward - mean) / std")
print(f"PPO from {init_from} with reward '{reward}': {max_iters} iterations of {batch_size} rollouts "
      f"of {max_new_tokens} tokens")
start_time = time.time()
model.eval()
for iter_num in range(start_iter + 1, max_iters + 1):
    t0 = time.time()
    lr = loop.get_lr(iter_num - 1, learning_rate=learning_rate, warmup_iters=0, lr_decay_iters=max_iters,
                     min_lr=min_lr, decay_lr=decay_lr)
    batch = rollout(kl_ctl.value)
    pg_loss, vf_loss, clipfrac = update(batch, lr)
    record = {'iter': iter_num, 'reward': batch['scores'].mean().item(), 'kl': batch['kl'].mean().item(),
              'kl_coef': kl_ctl.value, 'entropy': batch['entropy'].item(), 'length': batch['length'].mean().item(),
              'clipfrac': clipfrac,
              'value_loss': vf_loss, 'policy_loss': pg_loss, 'lr': lr, 'elapsed_s': time.time() - start_time}
    kl_ctl.update(record['kl'], batch_size)
    if not all(np.isfinite(v) for v in record.values()):
        raise UserError(f"PPO diverged at iter {iter_num} ({record}): lower learning_rate or raise init_kl_coef")
    log.write(record)
    if iter_num % log_interval == 0:
        print(f"iter {iter_num}: reward {record['reward']:.3f}, kl {record['kl']:.2f}, beta {record['kl_coef']:.3f}, "
              f"entropy {record['entropy']:.2f}, length {record['length']:.1f}, clipfrac {clipfrac:.3f}, "
              f"value loss {vf_loss:.4f}, time {(time.time() - t0) * 1000:.0f}ms")
    if stopper.requested and iter_num < max_iters:
        save(iter_num)
        print(f"stopped by signal after iteration {iter_num}: the policy so far is in {out_dir}/ckpt.pt; go on with "
              f"--init_from=resume --out_dir={out_dir}, or evaluate it with --eval_only=True --out_dir={out_dir}")
        raise SystemExit(130)
    if save_interval and iter_num % save_interval == 0 and iter_num < max_iters:
        save(iter_num)
ppo_minutes = (time.time() - start_time) / 60
print(f"PPO: {max_iters} iterations in {ppo_minutes:.1f} min")
save(max_iters)  # before the evaluation, which takes a while: the trained policy is never at risk

results = evaluate(ppo_minutes)
best_val_loss = results.get('val_loss_policy', best_val_loss)
save(max_iters)
print(f"saved the policy to {os.path.join(out_dir, 'ckpt.pt')}")
