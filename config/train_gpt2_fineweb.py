# GPT-2 (124M) on FineWeb-Edu, build-nanogpt's recipe: ~10B tokens, one epoch of sample-10BT, HellaSwag as it trains
# $ torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_fineweb.py
# (prepare first: python data/fineweb/prepare.py and python data/hellaswag/prepare.py)
out_dir = 'out-gpt2-fineweb'
wandb_log = False
wandb_project = 'fineweb'
wandb_run_name = 'gpt2-124M'

dataset = 'fineweb'
# 16 sequences * 1024 tokens * 32 accumulation steps = 524,288 = 2**19 tokens per step, exactly build-nanogpt's.
# gradient_accumulation_steps is the global count: 4 micro-steps per GPU on 8 GPUs (32 on one). With 80GB GPUs,
# build-nanogpt's own layout is batch_size = 64 and gradient_accumulation_steps = 8 (1 per GPU): the same step.
batch_size = 16
block_size = 1024
gradient_accumulation_steps = 32

bias = True  # GPT-2's own architecture, as build-nanogpt's model (biases in Linear and LayerNorm)

# 19,073 steps * 524,288 tokens = 10.0B tokens; warmup 715 steps (375M tokens, GPT-3's), cosine down to lr / 10
max_iters = 19073
lr_decay_iters = 19073
learning_rate = 6e-4
min_lr = 6e-5
warmup_iters = 715
weight_decay = 0.1

# build-nanogpt evaluates every 250 steps on 20 batches of 64 sequences on each of 8 GPUs: 10,240 sequences,
# here 640 batches of 16 (shared by the processes)
eval_interval = 250
eval_iters = 640
eval_hellaswag = True  # HellaSwag accuracy at every eval, as build-nanogpt reports it
log_interval = 10
