# Summarization from human feedback, stage 1 of 3 (Stiennon et al. 2020; minRLHF's second project): supervised
# finetuning of GPT-2 (124M) on the Reddit TL;DR posts' reference summaries, the loss on the summaries only (the
# masks data/tldr/prepare.py writes). Needs GPT-2's weights and the datasets (the network once); a GPU.
# $ python data/tldr/prepare.py && python train.py config/sft_tldr.py
# offline: --init_from=/path/to/a/local/hugging-face/gpt2/directory, and prepare.py --input=... --comparisons=...
# next: config/train_reward_tldr.py, then config/rlhf_tldr.py (README: "Summarization from human feedback")
out_dir = 'out-sft-tldr'
init_from = 'gpt2'
dataset = 'tldr'
always_save_checkpoint = False  # keep the best val loss (on held-out summaries)

block_size = 1024  # prepare.py keeps posts that fit with their summary: a window holds one to three of them
batch_size = 8
gradient_accumulation_steps = 8  # 64 windows, 65,536 tokens a step
max_iters = 1000  # about one and a half epochs at ~350 tokens per post (prepare.py prints the real count)
lr_decay_iters = 1000
warmup_iters = 50
learning_rate = 5e-5
min_lr = 5e-6
dropout = 0.1
eval_interval = 100
eval_iters = 100
