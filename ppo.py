"""
Proximal Policy Optimization for a language model, the pieces rlhf.py, train_reward.py, the
preference-data script and the tests share. The recipe is Ziegler et al. 2019 ("Fine-Tuning Language
Models from Human Preferences", https://arxiv.org/abs/1909.08593) as used by InstructGPT:

    rollout   prompts (B, P) -> model.generate -> completions (B, N), a reward per completion
    penalty   per-token reward r_t = -beta * (log pi(a_t) - log pi_ref(a_t)), plus the completion's
              reward on its last token; beta follows an adaptive controller toward a target KL
    GAE       advantages and returns from r_t and the value head's V(s_t)
    update    several epochs of minibatches of the clipped policy loss + the clipped value loss

Shapes: B sequences, T tokens each (prompt + completion, right-padded), N completion tokens, C the
model width, V the vocabulary. Token j of a completion sits at position start + j of its sequence and
is predicted by the hidden state at position start + j - 1: `completion_positions` gives those.
"""
import os

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

from configurator import UserError
from data.common import read_jsonl


# -----------------------------------------------------------------------------
# the model: a GPT with a scalar head

def at_positions(h, positions):
    """Rows of h (B, T, C) at positions (B, K): (B, K, C)."""
    return h.gather(1, positions[:, :, None].expand(-1, -1, h.size(-1)))


class ScalarHeadGPT(nn.Module):
    """A GPT whose final hidden states also feed a Linear(C, 1). In PPO the scalar at a position is the
    value V(s) of the text so far (the critic shares the policy's trunk, as in Ziegler et al.); in a
    reward model the scalar at a text's last token is its reward. `gpt` stays a plain GPT, so its
    state_dict is exactly what sample.py and train.py load; the head is saved beside it."""

    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt
        self.head = nn.Linear(gpt.config.n_embd, 1)
        nn.init.zeros_(self.head.weight)  # every scalar starts at 0: no made-up values before training
        nn.init.zeros_(self.head.bias)

    def forward(self, idx, positions, logits=True):
        """idx (B, T), positions (B, K) -> logits (B, K, V) (None unless logits) and scalars (B, K), both
        read from the hidden states at those positions only (the lm_head matmul is the largest)."""
        h = at_positions(self.gpt.hidden_states(idx), positions)  # (B, K, C)
        return (self.gpt.logits(h) if logits else None), self.head(h).squeeze(-1)


def completion_positions(starts, n):
    """(B, n) positions whose hidden states predict completion tokens 0..n-1 of rows starting at starts (B,)."""
    return starts[:, None] - 1 + torch.arange(n, device=starts.device)


def token_logprobs(logits, tokens, entropy=True):
    """log pi(token) (B, N) and the entropy of pi (B, N) from logits (B, N, V) and tokens (B, N); entropy=False
    leaves the entropy out (None): over GPT-2's vocabulary it costs as much as the log-softmax itself."""
    logp_all = F.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(-1, tokens[:, :, None]).squeeze(-1)
    return logp, (-(logp_all.exp() * logp_all).sum(-1) if entropy else None)


@torch.no_grad()
def completion_logprobs(gpt, seq, starts, n):
    """log-probabilities (B, n) of the completion tokens under a plain GPT (e.g. the frozen reference)."""
    pos = completion_positions(starts, n)
    return token_logprobs(gpt.logits(at_positions(gpt.hidden_states(seq), pos)), seq.gather(1, pos + 1), False)[0]


# -----------------------------------------------------------------------------
# rollouts

def prompt_windows(data, count, prompt_len, rng):
    """`count` prompts of prompt_len tokens at random offsets of a token array (e.g. train.bin's memmap)."""
    offsets = rng.integers(0, len(data) - prompt_len, size=count)
    return [data[o:o + prompt_len].astype(np.int64).tolist() for o in offsets]


def read_prompt_file(path, tokenizer, max_new_tokens, block_size):
    """(token lists of the prompts, reference completions or None) of a .txt (one prompt per line) or .jsonl
    ({"prompt": ...} per line) file; a .jsonl whose every line also has a "completion" gives those as the
    references (for ROUGE-L). Each prompt must leave room for max_new_tokens in the model's context of block_size."""
    if not os.path.isfile(path):
        raise UserError(f"prompt file {path} not found")
    references = None
    if path.endswith('.jsonl'):
        try:
            records = read_jsonl(path, {'prompt': str, 'completion': str})
            references = [record['completion'] for _, record in records]
        except UserError:  # no references; a line without a prompt fails again below
            records = read_jsonl(path, {'prompt': str})
        texts = [(n, record['prompt']) for n, record in records]
    else:
        with open(path, encoding='utf-8') as f:
            texts = [(n, line.rstrip('\r\n')) for n, line in enumerate(f, 1) if line.strip()]
    prompts = []
    for n, text in texts:
        try:
            ids = tokenizer.encode(text, strict=True)
        except UserError as e:
            raise UserError(f"{path}:{n}: {e}") from None
        if not ids:
            raise UserError(f"{path}:{n}: the prompt is empty")
        if len(ids) + max_new_tokens > block_size:
            raise UserError(f"{path}:{n}: the prompt is {len(ids)} tokens; with max_new_tokens={max_new_tokens} "
                            f"it does not fit the model's context of {block_size}: shorten it or lower "
                            f"max_new_tokens (data/tldr/prepare.py leaves such posts out, and counts them)")
        prompts.append(ids)
    if not prompts:
        raise UserError(f"{path} holds no prompts")
    return prompts, references


@torch.no_grad()
def generate_completions(gpt, prompts, max_new_tokens, device, stop_token=None, vocab_size=None):
    """Sample a completion of up to max_new_tokens (temperature 1, the distribution PPO optimizes) for each
    prompt (a list of token lists), all prompts together: shorter ones are left-padded (GPT.generate's pad),
    which changes no row's tokens' probabilities. With stop_token (the end-of-text token), generation ends
    once every row has written it; what a row writes after its own is not its completion (completion_mask).
    vocab_size: the tokenizer's, when the model's rows are padded past it (GPT.generate_stream).
    Returns seq (B, T) with each row prompt + completion, right-padded with 0 to the longest row (the layout
    every forward of the PPO step reads: padding only after real tokens, so causal attention needs no mask),
    and starts (B,), where each completion begins."""
    gpt.eval()
    lengths = torch.tensor([len(p) for p in prompts])
    P = int(lengths.max())
    pad = P - lengths  # (B,)
    idx = torch.zeros(len(prompts), P, dtype=torch.long)
    for i, p in enumerate(prompts):
        idx[i, pad[i]:] = torch.tensor(p)
    idx, pad = idx.to(device), pad.to(device)
    new, done = [], torch.zeros(len(prompts), dtype=torch.bool, device=device)
    for token in gpt.generate_stream(idx, max_new_tokens, temperature=1.0, pad=pad if pad.any() else None,
                                     vocab_size=vocab_size):
        new.append(token)  # (B, 1)
        if stop_token is not None:
            done |= token[:, 0] == stop_token
            if done.all():
                break
    out = torch.cat(new, dim=1)  # (B, n) with n <= max_new_tokens
    seq = torch.zeros(len(prompts), P + max_new_tokens, dtype=torch.long, device=device)
    for i, p in enumerate(prompts):
        seq[i, :len(p)] = idx[i, pad[i]:]
        seq[i, len(p):len(p) + out.size(1)] = out[i]
    return seq, lengths.to(device)


def completion_mask(seq, starts, n, stop_token=None):
    """(B, n) float: 1 on each row's completion tokens up to and including its first stop_token, 0 after it
    (all 1 without a stop token). The stop token is the last action: its reward and its KL count."""
    tokens = seq.gather(1, completion_positions(starts, n) + 1)  # (B, n)
    if stop_token is None:
        return torch.ones_like(tokens, dtype=torch.float)
    stops = (tokens == stop_token).long()
    return ((stops.cumsum(1) - stops) == 0).float()  # no stop strictly before this token


def completion_texts(tokenizer, seq, starts, n, mask=None):
    """The completion of each row of seq (B, T), as generate_completions returns it, decoded: its n tokens, or
    those under mask (B, n) less a final stop token (the end-of-text is not text)."""
    texts = []
    for i, (row, s) in enumerate(zip(seq.tolist(), starts.tolist())):
        ids = row[s:s + n]
        if mask is not None:
            ids = ids[:int(mask[i].sum())]
            if ids and ids[-1] == tokenizer.eot_token:
                ids = ids[:-1]
        texts.append(tokenizer.decode(ids))
    return texts


# -----------------------------------------------------------------------------
# rewards with the KL penalty, advantages

def kl_penalized_rewards(scores, logp, ref_logp, kl_coef, mask=None):
    """Per-token rewards (B, N): -kl_coef * (log pi - log pi_ref) at every token (a sample estimate of
    the KL to the reference) plus the completion's score (B,) on its last token: the last under mask (B, N),
    where a completion stopped early. Also returns the per-token KL estimate (B, N), 0 outside the mask: its
    sum over tokens, averaged over rows, is the KL of the sequences."""
    mask = torch.ones_like(logp) if mask is None else mask
    kl = (logp - ref_logp) * mask
    rewards = -kl_coef * kl
    last = mask.sum(1).long().clamp(min=1) - 1  # (B,)
    rewards[torch.arange(rewards.size(0)), last] += scores
    return rewards, kl


def gae(rewards, values, gamma, lam, mask=None):
    """Generalized advantage estimation (Schulman et al. 2015) over completion tokens, rewards and
    values (B, N); the value after the last token is 0 (the episode ends there), and with mask (B, N) the
    episode ends at the mask's last 1: rewards and values after it count as 0, so are their advantages.
    delta_t = r_t + gamma * V_{t+1} - V_t,  A_t = delta_t + gamma * lam * A_{t+1},  returns = A + V."""
    if mask is not None:
        rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.size(1))):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages, advantages + values


def masked_mean(x, mask=None):
    """The mean of x over the elements where mask is 1 (all of them without a mask); what lies outside the mask,
    even inf or NaN, does not count."""
    return x.mean() if mask is None else torch.where(mask > 0, x, 0.0).sum() / mask.sum().clamp(min=1)


def whiten(x, mask=None, eps=1e-8):
    """x shifted to mean 0 and scaled to std 1 over its elements under mask (all without one); 0 elsewhere."""
    if mask is None:
        return (x - x.mean()) / (x.std() + eps)
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask) * mask.sum() / (mask.sum() - 1).clamp(min=1)  # unbiased, as x.std()
    return (x - mean) / (var.sqrt() + eps) * mask


# -----------------------------------------------------------------------------
# the losses

def policy_loss(logp, old_logp, advantages, cliprange, mask=None):
    """PPO's clipped surrogate (Schulman et al. 2017), to minimize: the mean over tokens of
    max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)) with ratio = pi / pi_old. Once the ratio has
    left the clip range in the direction the advantage pushes it, the clipped term is the larger one
    and the token gives no gradient. Returns (loss, fraction of tokens that were clipped), both over the tokens
    under mask (B, N) when there is one."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.max(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).float(), mask)
    return loss, clipfrac


def value_loss(values, old_values, returns, cliprange_value, mask=None):
    """The clipped value loss of PPO2 / Ziegler et al.: 0.5 * max((V - R)^2, (V_clipped - R)^2), V_clipped
    being V kept within cliprange_value of the value at rollout time; over the tokens under mask (B, N)."""
    clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    return 0.5 * masked_mean(torch.max((values - returns) ** 2, (clipped - returns) ** 2), mask)


def accumulate_gradients(model, batch, rows, micro_batch_size, *, cliprange, cliprange_value, vf_coef, ctx):
    """Backpropagate the PPO loss (clipped policy loss + vf_coef * clipped value loss) of the minibatch `rows`
    (indices into a rollout batch's tensors: seq and pos (B, T), tokens, mask, logp, values, advantages, returns
    (B, N)), micro_batch_size rollouts per forward. Each micro-batch's token means are weighted by its share of the
    minibatch's tokens, so the gradients are those of one pass over the whole minibatch: gradient accumulation
    changes the memory, not the step. Returns (policy loss, value loss, clip fraction) of the minibatch, (3,)."""
    n_tokens = batch['mask'][rows].sum()
    stats = 0.0
    for micro in rows.split(micro_batch_size):
        mask = batch['mask'][micro]
        with ctx:
            logits, values = model(batch['seq'][micro], batch['pos'][micro])
        logp, _ = token_logprobs(logits, batch['tokens'][micro], entropy=False)
        pg_loss, clipfrac = policy_loss(logp, batch['logp'][micro], batch['advantages'][micro], cliprange, mask)
        vf_loss = value_loss(values.float(), batch['values'][micro], batch['returns'][micro], cliprange_value, mask)
        share = mask.sum() / n_tokens
        ((pg_loss + vf_coef * vf_loss) * share).backward()
        stats = stats + share * torch.stack([pg_loss.detach(), vf_loss.detach(), clipfrac])
    return stats


class AdaptiveKLController:
    """Ziegler et al.'s controller for the KL coefficient beta: after each batch of n_steps rollouts
    whose KL (per sequence, summed over tokens) was `kl`,
        beta *= 1 + clip((kl - target) / target, -0.2, 0.2) * n_steps / horizon,
    so beta grows while the policy is further than `target` from the reference and shrinks while it
    is closer, by at most 20% per `horizon` rollouts."""

    def __init__(self, init_kl_coef, target, horizon):
        if target <= 0 or horizon <= 0:
            raise UserError(f"target_kl ({target}) and kl_horizon ({horizon}) must be positive")
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, kl, n_steps):
        error = float(np.clip(kl / self.target - 1.0, -0.2, 0.2))
        self.value *= 1.0 + error * n_steps / self.horizon
