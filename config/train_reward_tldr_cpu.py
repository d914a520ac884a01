# The summarization chain small and offline, stage 2 of 3: reward models initialised from the SFT model, on the
# synthetic comparisons (the labeller prefers the candidate summary with the higher ROUGE-L against the first line;
# degenerate ones last) and on comparisons of the SFT model's own summaries (config/preferences_tldr_cpu.py). PPO
# scores with the mean of three, trained alike with different seeds (config/rlhf_tldr_cpu.py):
# $ python data/preferences/prepare.py config/preferences_tldr_cpu.py      (after config/sft_tldr_cpu.py)
# $ python train_reward.py config/train_reward_tldr_cpu.py
# $ python train_reward.py config/train_reward_tldr_cpu.py --seed=13371 --out_dir=out-reward-tldr-cpu-1
# $ python train_reward.py config/train_reward_tldr_cpu.py --seed=13372 --out_dir=out-reward-tldr-cpu-2
out_dir = 'out-reward-tldr-cpu'
init_from = 'out-sft-tldr-cpu'
train_file = 'data/tldr/comparisons_train.jsonl,data/tldr/sft_comparisons/train.jsonl'
val_file = 'data/tldr/comparisons_val.jsonl,data/tldr/sft_comparisons/val.jsonl'
reward_reduction = 'sum'  # per token, summed: each slip counts where it is written (at 'last', one hidden state
# had to judge the whole summary, and two samples of one post were ranked at 50-64%)

batch_size = 32
max_iters = 1000
eval_interval = 200
log_interval = 50
learning_rate = 1e-3
weight_decay = 0.0
dropout = 0.0
