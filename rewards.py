"""
Rewards for rlhf.py, behind one small interface: a reward is a callable

    reward(texts, prompts) -> list of floats

scoring each completion texts[i] (written after prompts[i]), a batch at a time. `get_reward(name)`
picks one by the name a config gives:

    'sentiment'        VADER's compound score in [-1, 1] (vaderSentiment, whose lexicon ships inside the
                       package, so it works offline): the stand-in for minRLHF's sentiment classifier
    'count:<chars>'    how many times any of these characters occurs in the text: a toy reward that is
                       easy to learn, for smoke tests
    'rouge_l'          ROUGE-L F1 against the prompt's reference completion (rlhf.py gives the references of its
                       prompt files): the ground truth a reward model stands in for, where there is one, so
                       PPO against it is the ceiling PPO against a reward model can reach
    <out_dir>          a reward model trained by train_reward.py (out_dir/ckpt.pt)
    <a>,<b>,...        the mean of several of these: reward models trained with different seeds err on different
                       texts, so a policy finds less to exploit in their mean than in any one (Coste et al. 2023)

A reward model is a GPT with a scalar head (ppo.ScalarHeadGPT) reading prompt + text. Its reward is read one
of two ways (train_reward.py's reward_reduction, kept in its checkpoint):
    'last'   the scalar at the last token, the end-of-text appended to the text (Stiennon et al. 2020,
             InstructGPT): the model has read the whole summary before it judges it
    'sum'    the sum of its scalars over the text's tokens: a small model learns a per-word quality such as
             sentiment far more easily where each word is than as one summary at the end, and a sum adds word
             scores up the way VADER adds its lexicon's valences
It is trained on preference pairs, jsonl lines {"prompt": ..., "chosen": ..., "rejected": ...}, with the
Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected)).
"""
import os

import torch
from torch.nn import functional as F

from checkpoint import load_checkpoint, model_from_checkpoint, tokenizer_for
from configurator import UserError
from data.common import read_jsonl
from ppo import ScalarHeadGPT

PREFERENCE_FIELDS = ('prompt', 'chosen', 'rejected')
REDUCTIONS = ('sum', 'last')


class Sentiment:
    """VADER's compound sentiment score of the text, in [-1, 1] (the prompt is not scored)."""

    def __init__(self):
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        self.analyzer = SentimentIntensityAnalyzer()

    def __call__(self, texts, prompts):
        return [self.analyzer.polarity_scores(text)['compound'] for text in texts]


class CharCount:
    """The number of characters of the text that are in `chars`."""

    def __init__(self, chars):
        if not chars:
            raise UserError("reward 'count:' needs the characters to count, e.g. count:e")
        self.chars = set(chars)

    def __call__(self, texts, prompts):
        return [float(sum(c in self.chars for c in text)) for text in texts]


class ReferenceRougeL:
    """ROUGE-L F1 of each text against the reference completion of its prompt (`add` gives them, by prompt text)."""

    def __init__(self):
        self.references = {}

    def add(self, prompts, references):
        self.references.update(zip(prompts, references, strict=True))

    def __call__(self, texts, prompts):
        missing = [p for p in prompts if p not in self.references]
        if missing:
            raise UserError(f"reward 'rouge_l': no reference completion for the prompt {missing[0][:60]!r}")
        return rouge_l(texts, [self.references[p] for p in prompts])


def encode_completion(tokenizer, prompt, text, reduction, block_size):
    """(prompt ids, completion ids) as a reward model reads them, in training and in scoring alike: with 'last',
    the end-of-text token closes the completion (where there is one; a character vocabulary reads its last
    character). A prompt too long for the context loses its oldest tokens: returns (prompt ids, completion
    ids, how many prompt tokens were cut); a completion that alone does not fit is a UserError."""
    prompt_ids, ids = tokenizer.encode(prompt, strict=True), tokenizer.encode(text, strict=True)
    if reduction == 'last' and tokenizer.eot_token is not None:
        ids = ids + [tokenizer.eot_token]
    if len(ids) > block_size:
        raise UserError(f"a completion of {len(ids)} tokens does not fit the reward model's context of {block_size}")
    cut = max(0, len(prompt_ids) + len(ids) - block_size)
    return prompt_ids[cut:], ids, cut


def completion_scores(model, pairs, reduction='sum'):
    """Rewards (B,) of (prompt ids, completion ids) pairs under a ScalarHeadGPT: the sum of its scalars over
    each completion's positions ('sum': 0 for an empty one), or its scalar at the text's last token ('last'). Rows are
    right-padded to one length; padding comes after every real token, so causal attention never lets it change
    them, and the mask (or the index) leaves it out."""
    assert reduction in REDUCTIONS, reduction
    device = model.head.weight.device
    T = max(len(p) + len(c) for p, c in pairs)
    idx = torch.zeros(len(pairs), T, dtype=torch.long)
    mask = torch.zeros(len(pairs), T)
    for i, (p, c) in enumerate(pairs):
        assert p or c, "nothing to score"
        idx[i, :len(p) + len(c)] = torch.tensor(p + c)
        if reduction == 'sum':
            mask[i, len(p):len(p) + len(c)] = 1.0
        else:
            mask[i, len(p) + len(c) - 1] = 1.0
    positions = torch.arange(T).expand(len(pairs), T).to(device)
    _, scalars = model(idx.to(device), positions, logits=False)  # (B, T)
    mask = mask.to(device)
    return (scalars.float() * mask).sum(1)


class RewardModel:
    """A reward model saved by train_reward.py, scoring batch_size texts per forward pass. Texts are sorted by
    length first, so each batch pads little; the scores come back in the order of the texts. `truncated`
    counts the prompts that lost their oldest tokens to fit the context."""

    def __init__(self, out_dir, device='cpu', batch_size=32):
        checkpoint = load_checkpoint(os.path.join(out_dir, 'ckpt.pt'))
        if checkpoint.get('scalar_head_role') != 'reward':
            what = 'an RLHF policy' if checkpoint.get('scalar_head_role') == 'value' else 'a language model'
            raise UserError(f"{out_dir}/ckpt.pt is {what}, not a reward model (it has no reward head): train one "
                            f"with `python train_reward.py --out_dir={out_dir}`")
        self.model = ScalarHeadGPT(model_from_checkpoint(checkpoint, dropout=0.0))
        self.model.head.load_state_dict(checkpoint['scalar_head'])
        self.model.to(device).eval()
        self.tokenizer = tokenizer_for(checkpoint)
        self.reduction = checkpoint.get('reward_reduction', 'sum')  # checkpoints from before 'last' summed
        self.out_dir = out_dir
        self.batch_size = batch_size
        self.truncated = 0

    def check_reads(self, tokenizer, writer):
        """A UserError, before any work, when texts of `tokenizer`'s vocabulary (the policy's, named `writer`) can
        hold characters this reward model's character vocabulary lacks: scoring would fail at the first one."""
        if self.tokenizer.name != 'char':
            return  # GPT-2 BPE encodes any text
        if tokenizer.name != 'char':
            lacks = f"the {tokenizer.name} text that {writer} writes"
        else:
            missing = sorted(set(tokenizer.meta['itos'].values()) - set(self.tokenizer.meta['stoi']))
            if not missing:
                return
            lacks = f"{len(missing)} of the characters {writer} writes ({''.join(missing)[:20]!r})"
        raise UserError(f"the reward model {self.out_dir} reads a {self.tokenizer.vocab_size}-character vocabulary, "
                        f"which lacks {lacks}: train the reward model on the policy's vocabulary "
                        f"(train_reward.py --init_from=<the policy>), or pick a policy of its vocabulary")

    @torch.no_grad()
    def __call__(self, texts, prompts):
        block_size = self.model.gpt.config.block_size
        pairs = []
        for text, prompt in zip(texts, prompts, strict=True):
            try:
                prompt_ids, ids, cut = encode_completion(self.tokenizer, prompt, text, self.reduction, block_size)
            except UserError as e:
                raise UserError(f"the reward model {self.out_dir}: {e}") from None
            self.truncated += cut > 0
            pairs.append((prompt_ids, ids))
        # an empty completion summed over no tokens scores 0 ('last' reads its end-of-text, or the prompt's end)
        order = sorted((i for i, (p, c) in enumerate(pairs) if p or c), key=lambda i: sum(map(len, pairs[i])))
        scores = [0.0] * len(pairs)
        for k in range(0, len(order), self.batch_size):
            rows = order[k:k + self.batch_size]
            for i, score in zip(rows, completion_scores(self.model, [pairs[i] for i in rows], self.reduction).tolist()):
                scores[i] = score
        return scores


class MeanReward:
    """The mean of several rewards' scores; `members` are the rewards."""

    def __init__(self, members):
        self.members = members

    def __call__(self, texts, prompts):
        scores = [member(texts, prompts) for member in self.members]
        return [sum(column) / len(column) for column in zip(*scores)]


def get_reward(name, device='cpu', batch_size=32):
    """The reward a config names: 'sentiment', 'count:<chars>', 'rouge_l' (its references to be added), a reward
    model's out_dir (scoring batch_size texts per forward pass), or several of these, comma-separated (their mean)."""
    if name == 'sentiment':
        return Sentiment()
    if name.startswith('count:'):  # its characters may include a comma
        return CharCount(name[len('count:'):])
    if ',' in name:
        return MeanReward([get_reward(part.strip(), device, batch_size) for part in name.split(',')])
    if name == 'rouge_l':
        return ReferenceRougeL()
    if os.path.isfile(os.path.join(name, 'ckpt.pt')):
        return RewardModel(name, device, batch_size)
    raise UserError(f"unknown reward '{name}': use 'sentiment', 'count:<chars>', 'rouge_l', or the out_dir of a reward "
                    f"model trained by train_reward.py (a folder holding ckpt.pt); several, comma-separated, for "
                    f"their mean")


def rouge_l(texts, references):
    """ROUGE-L F1 of each text against its reference (Lin 2004: their longest common subsequence of words),
    by Google's rouge-score package with the Porter stemmer, as summarization papers report it."""
    from rouge_score import rouge_scorer
    scorer = rouge_scorer.RougeScorer(['rougeL'], use_stemmer=True)
    return [scorer.score(reference, text)['rougeL'].fmeasure for text, reference in zip(texts, references, strict=True)]


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
