"""
Rewards for rlhf.py, behind one small interface: a reward is a callable

    reward(text, prompt='') -> float

scoring a completion `text` (written after `prompt`). `get_reward(name)` picks one by the name a
config gives:

    'sentiment'        VADER's compound score in [-1, 1] (vaderSentiment, whose lexicon ships inside the
                       package, so it works offline): the stand-in for minRLHF's sentiment classifier
    'count:<chars>'    how many times any of these characters occurs in the text: a toy reward that is
                       easy to learn, for smoke tests
    <out_dir>          a reward model trained by train_reward.py (out_dir/ckpt.pt)

A reward model is a GPT with a scalar head (ppo.ScalarHeadGPT) reading prompt + text; the reward is
the sum of its scalars over the text's tokens. (InstructGPT reads the last token only; a small model
learns a per-word quality such as sentiment far more easily where each word is, than as one summary
at the end, and a sum adds word scores up the way VADER adds its lexicon's valences.) It is trained on preference pairs, jsonl lines {"prompt": ..., "chosen": ..., "rejected": ...},
with the Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected)).
"""
import os

import torch
from torch.nn import functional as F

from checkpoint import load_checkpoint, model_from_checkpoint, tokenizer_for
from configurator import UserError
from data.common import read_jsonl
from ppo import ScalarHeadGPT

PREFERENCE_FIELDS = ('prompt', 'chosen', 'rejected')


class Sentiment:
    """VADER's compound sentiment score of the text, in [-1, 1] (the prompt is not scored)."""

    def __init__(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        self.analyzer = SentimentIntensityAnalyzer()

    def __call__(self, text, prompt=''):
        return self.analyzer.polarity_scores(text)['compound']


class CharCount:
    """The number of characters of the text that are in `chars`."""

    def __init__(self, chars):
        if not chars:
            raise UserError("reward 'count:' needs the characters to count, e.g. count:e")
        self.chars = set(chars)

    def __call__(self, text, prompt=''):
        return float(sum(c in self.chars for c in text))


def completion_scores(model, pairs):
    """Rewards (B,) of (prompt ids, completion ids) pairs under a ScalarHeadGPT: the sum of its scalars over
    each completion's positions. Rows are right-padded to one length; padding comes after every real token,
    so causal attention never lets it change them, and the mask leaves it out of the sum."""
    device = model.head.weight.device
    T = max(len(p) + len(c) for p, c in pairs)
    idx = torch.zeros(len(pairs), T, dtype=torch.long)
    mask = torch.zeros(len(pairs), T)
    for i, (p, c) in enumerate(pairs):
        assert c, "a completion needs at least one token"
        idx[i, :len(p) + len(c)] = torch.tensor(p + c)
        mask[i, len(p):len(p) + len(c)] = 1.0
    positions = torch.arange(T).expand(len(pairs), T).to(device)
    _, scalars = model(idx.to(device), positions, logits=False)  # (B, T)
    mask = mask.to(device)
    return (scalars.float() * mask).sum(1)


class RewardModel:
    """A reward model saved by train_reward.py: the sum of its scalar head over the text's tokens."""

    def __init__(self, out_dir, device='cpu'):
        checkpoint = load_checkpoint(os.path.join(out_dir, 'ckpt.pt'))
        if checkpoint.get('scalar_head_role') != 'reward':
            what = 'an RLHF policy' if checkpoint.get('scalar_head_role') == 'value' else 'a language model'
            raise UserError(f"{out_dir}/ckpt.pt is {what}, not a reward model (it has no reward head): train one "
                            f"with `python train_reward.py --out_dir={out_dir}`")
        self.model = ScalarHeadGPT(model_from_checkpoint(checkpoint, dropout=0.0))
        self.model.head.load_state_dict(checkpoint['scalar_head'])
        self.model.to(device).eval()
        self.tokenizer = tokenizer_for(checkpoint)
        self.device = device

    @torch.no_grad()
    def __call__(self, text, prompt=''):
        prompt_ids, ids = self.tokenizer.encode(prompt), self.tokenizer.encode(text)
        block_size = self.model.gpt.config.block_size
        if len(prompt_ids) + len(ids) > block_size:
            raise UserError(f"prompt + completion is {len(prompt_ids) + len(ids)} tokens, more than the reward "
                            f"model's context of {block_size}: shorten the prompts or lower max_new_tokens")
        if not ids:
            raise UserError("the reward model cannot score an empty completion")
        return completion_scores(self.model, [(prompt_ids, ids)]).item()


def get_reward(name, device='cpu'):
    """The reward a config names: 'sentiment', 'count:<chars>', or a reward model's out_dir."""
    if name == 'sentiment':
        return Sentiment()
    if name.startswith('count:'):
        return CharCount(name[len('count:'):])
    if os.path.isfile(os.path.join(name, 'ckpt.pt')):
        return RewardModel(name, device)
    raise UserError(f"unknown reward '{name}': use 'sentiment', 'count:<chars>', or the out_dir of a reward "
                    f"model trained by train_reward.py (a folder holding ckpt.pt)")


# -----------------------------------------------------------------------------
# preference pairs and the Bradley-Terry loss

def load_preferences(path):
    """The pairs of a jsonl file, one {"prompt", "chosen", "rejected"} object of strings per line."""
    if not os.path.isfile(path):
        raise UserError(f"no preference file {path}: make one with `python data/preferences/prepare.py` "
                        f"(jsonl lines of prompt, chosen, rejected)")
    pairs = [pair for _, pair in read_jsonl(path, dict.fromkeys(PREFERENCE_FIELDS, str))]
    if not pairs:
        raise UserError(f"{path} holds no preference pairs")
    return pairs


def bradley_terry_loss(chosen_scores, rejected_scores):
    """-log P(chosen preferred) with P = sigmoid(r_chosen - r_rejected), averaged over pairs (B,);
    also the accuracy, the fraction of pairs the model ranks the right way round."""
    margin = chosen_scores - rejected_scores
    return -F.logsigmoid(margin).mean(), (margin > 0).float().mean()
