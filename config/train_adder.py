# 2-digit addition (minGPT's adder demo), sized for a 2-core CPU
# $ python data/adder/prepare.py && python train.py config/train_adder.py && python data/adder/evaluate.py
out_dir = 'out-adder'
eval_interval = 500
eval_iters = 20
log_interval = 50
always_save_checkpoint = True  # keep the final model: evaluate.py scores it

dataset = 'adder'
gradient_accumulation_steps = 1
batch_size = 192
# two 10-character lines. Keep windows short: they start anywhere, so each position must learn the task
# (32 or 64 learn far slower)
block_size = 20

n_layer = 3
n_head = 4
n_embd = 64
dropout = 0.0

learning_rate = 3e-3
max_iters = 2500
lr_decay_iters = 2500
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100

device = 'cpu'
dtype = 'float32'
compile = False
