# Summarization from human feedback, stage 2 of 3: a reward model on OpenAI's human comparisons of TL;DR summaries,
# initialised from the SFT model (as in Stiennon et al. 2020), read at the summary's end-of-text.
# $ python train_reward.py config/train_reward_tldr.py      (after config/sft_tldr.py)
out_dir = 'out-reward-tldr'
init_from = 'out-sft-tldr'
train_file = 'data/tldr/comparisons_train.jsonl'
val_file = 'data/tldr/comparisons_val.jsonl'
reward_reduction = 'last'  # the scalar at the end-of-text, after the whole post and summary

batch_size = 16  # pairs: 32 sequences of up to 1024 tokens a step
max_iters = 5800  # one epoch of ~92,500 pairs, as the paper trains its reward models
learning_rate = 1.5e-5
weight_decay = 0.0
dropout = 0.0
eval_interval = 1000  # every held-out pair is scored at each eval
log_interval = 50
device = 'auto'
dtype = 'auto'
