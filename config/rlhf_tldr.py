# Summarization from human feedback, stage 3 of 3: PPO from the SFT model against the reward model, with a KL leash
# to the SFT model (the reference policy), on the TL;DR posts; eval.json scores the SFT model and the policy on the
# same held-out posts (reward, KL, summary length, ROUGE-L against the references).
# $ python rlhf.py config/rlhf_tldr.py      (after config/sft_tldr.py and config/train_reward_tldr.py)
out_dir = 'out-rlhf-tldr'
init_from = 'out-sft-tldr'
reward = 'out-reward-tldr'
prompt_file = 'data/tldr/posts_train.jsonl'
eval_prompt_file = 'data/tldr/posts_val.jsonl'
max_new_tokens = 64  # prepare.py's max_completion_tokens: the longest reference summary, its end-of-text included

max_iters = 1000  # 64,000 episodes
batch_size = 64
minibatch_size = 16
micro_batch_size = 4  # gradient accumulation: 4 rollouts of up to 1024 tokens per forward/backward
ppo_epochs = 4
learning_rate = 1e-5
min_lr = 1e-6
init_kl_coef = 0.05  # the paper's beta
target_kl = 6.0  # nats per summary
kl_horizon = 10000
eval_samples = 512
eval_iters = 50
reward_batch_size = 32
save_interval = 100
device = 'auto'
