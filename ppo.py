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
import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

from configurator import UserError


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


def token_logprobs(logits, tokens):
    """log pi(token) (B, N) and the entropy of pi (B, N) from logits (B, N, V) and tokens (B, N)."""
    logp_all = F.log_softmax(logits.float(), dim=-1)
    logp = logp_all.gather(-1, tokens[:, :, None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


@torch.no_grad()
def completion_logprobs(gpt, seq, starts, n):
    """log-probabilities (B, n) of the completion tokens under a plain GPT (e.g. the frozen reference)."""
    pos = completion_positions(starts, n)
    return token_logprobs(gpt.logits(at_positions(gpt.hidden_states(seq), pos)), seq.gather(1, pos + 1))[0]


# -----------------------------------------------------------------------------
# rollouts

def prompt_windows(data, count, prompt_len, rng):
    """`count` prompts of prompt_len tokens at random offsets of a token array (e.g. train.bin's memmap)."""
    offsets = rng.integers(0, len(data) - prompt_len, size=count)
    return [data[o:o + prompt_len].astype(np.int64).tolist() for o in offsets]


@torch.no_grad()
def generate_completions(gpt, prompts, max_new_tokens, device):
    """Sample a completion of max_new_tokens (temperature 1, the distribution PPO optimizes) for each
    prompt (a list of token lists). Prompts of equal length are generated together with the cached
    generate. Returns seq (B, T) with each row prompt + completion, right-padded with 0 to the
    longest row, and starts (B,), where each completion begins."""
    gpt.eval()
    lengths = [len(p) for p in prompts]
    T = max(lengths) + max_new_tokens
    seq = torch.zeros(len(prompts), T, dtype=torch.long, device=device)
    for length in sorted(set(lengths)):
        rows = [i for i, n in enumerate(lengths) if n == length]
        idx = torch.tensor([prompts[i] for i in rows], dtype=torch.long, device=device)
        seq[rows, :length + max_new_tokens] = gpt.generate(idx, max_new_tokens, temperature=1.0)
    return seq, torch.tensor(lengths, device=device)


def completion_texts(tokenizer, seq, starts, n):
    """The n-token completion of each row of seq (B, T), as generate_completions returns it, decoded."""
    return [tokenizer.decode(row[s:s + n]) for row, s in zip(seq.tolist(), starts.tolist())]


# -----------------------------------------------------------------------------
# rewards with the KL penalty, advantages

def kl_penalized_rewards(scores, logp, ref_logp, kl_coef):
    """Per-token rewards (B, N): -kl_coef * (log pi - log pi_ref) at every token (a sample estimate of
    the KL to the reference) plus the completion's score (B,) on its last token. Also returns the
    per-token KL estimate (B, N): its sum over tokens, averaged over rows, is the KL of the sequences."""
    kl = logp - ref_logp
    rewards = -kl_coef * kl
    rewards[:, -1] += scores
    return rewards, kl


def gae(rewards, values, gamma, lam):
    """Generalized advantage estimation (Schulman et al. 2015) over completion tokens, rewards and
    values (B, N); the value after the last token is 0 (the episode ends there).
    delta_t = r_t + gamma * V_{t+1} - V_t,  A_t = delta_t + gamma * lam * A_{t+1},  returns = A + V."""
    advantages = torch.zeros_like(rewards)
    next_value = torch.zeros_like(rewards[:, 0])
    next_advantage = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.size(1))):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages, advantages + values


def whiten(x, eps=1e-8):
    """x shifted to mean 0 and scaled to std 1 over all its elements."""
    return (x - x.mean()) / (x.std() + eps)


# -----------------------------------------------------------------------------
# the losses

def policy_loss(logp, old_logp, advantages, cliprange):
    """PPO's clipped surrogate (Schulman et al. 2017), to minimize: the mean over tokens of
    max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)) with ratio = pi / pi_old. Once the ratio has
    left the clip range in the direction the advantage pushes it, the clipped term is the larger one
    and the token gives no gradient. Returns (loss, fraction of tokens that were clipped)."""
    ratio = torch.exp(logp - old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = torch.max(unclipped, clipped).mean()
    clipfrac = (clipped > unclipped).float().mean()
    return loss, clipfrac


def value_loss(values, old_values, returns, cliprange_value):
    """The clipped value loss of PPO2 / Ziegler et al.: 0.5 * max((V - R)^2, (V_clipped - R)^2), V_clipped
    being V kept within cliprange_value of the value at rollout time."""
    clipped = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    return 0.5 * torch.max((values - returns) ** 2, (clipped - returns) ** 2).mean()


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
