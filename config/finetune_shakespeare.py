# finetune GPT-2 XL (1.5B) on tiny Shakespeare (BPE) on a GPU with 40 GB or more: weights, gradients and AdamW
# state alone are 25 GB (16 bytes a parameter). On a laptop: config/finetune_shakespeare_cpu.py (GPT-2 124M)
# $ python data/shakespeare/prepare.py && python train.py config/finetune_shakespeare.py
# offline: --init_from=/path/to/a/local/hugging-face/gpt2-xl/directory
import time

out_dir = 'out-shakespeare'
eval_interval = 5
eval_iters = 40
wandb_log = False
wandb_project = 'shakespeare'
wandb_run_name = 'ft-' + str(time.time())

dataset = 'shakespeare'
init_from = 'gpt2-xl'  # the largest GPT-2

always_save_checkpoint = False  # only save when val improves

# 1 sequence * 32 accumulation * 1024 tokens = 32,768 tokens per step; shakespeare has 301,966
# training tokens, so one epoch is ~9.2 steps
batch_size = 1
gradient_accumulation_steps = 32
max_iters = 20

# finetune at a constant small learning rate
learning_rate = 3e-5
decay_lr = False
