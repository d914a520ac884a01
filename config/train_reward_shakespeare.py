# a reward model for the happy-Shakespeare demo, trained on pairs of the CPU quickstart model's own samples
# labelled by VADER (data/preferences/prepare.py's rule: the higher-scored of two completions is chosen)
# $ python data/preferences/prepare.py && python train_reward.py config/train_reward_shakespeare.py
# $ python rlhf.py config/rlhf_happy_shakespeare.py --reward=out-reward-shakespeare
out_dir = 'out-reward-shakespeare'
train_file = 'data/preferences/train.jsonl'
val_file = 'data/preferences/val.jsonl'

# A small GPT from scratch on GPT-2 BPE tokens: VADER scores words, and a BPE token is mostly a whole word, so a
# one-layer model learns a per-word score quickly. (Starting from the character-level quickstart model, which
# would first have to learn to spell words, reached only 59% held-out accuracy in 600 steps.)
init_from = 'scratch'
dataset = 'shakespeare'  # no meta.pkl: GPT-2 BPE (nothing to prepare)
n_layer = 1
n_head = 2
n_embd = 64
block_size = 64

batch_size = 32  # pairs
max_iters = 2000
eval_interval = 250
learning_rate = 3e-4
weight_decay = 0.1
dropout = 0.1
