# GPT-2 (124M) on OpenWebText on one node of 8 A100 40GB: loss ~2.85 after ~4 days
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2.py
# (prepare first: python data/openwebtext/prepare.py; and python data/hellaswag/prepare.py to score HellaSwag at
# each eval, which is skipped, with a line saying so, where data/hellaswag/val.jsonl is missing)
wandb_log = False
wandb_project = 'owt'
wandb_run_name = 'gpt2-124M'

# 12 sequences * 1024 tokens * 40 accumulation steps (5 per GPU on 8 GPUs) = 491,520 tokens per step, ~0.5M
batch_size = 12
block_size = 1024
gradient_accumulation_steps = 5 * 8

# 600,000 steps: ~300B tokens
max_iters = 600000
lr_decay_iters = 600000
learning_rate = 6e-4
min_lr = 6e-5
warmup_iters = 2000
weight_decay = 1e-1

eval_interval = 1000
eval_iters = 200
log_interval = 10
eval_hellaswag = True  # HellaSwag acc_norm at each eval, in log.jsonl beside the loss (GPT-2 124M: 0.2955)
