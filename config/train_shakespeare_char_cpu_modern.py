# the CPU quickstart's data at nanoGPT's CPU model size (4 x 128) with the modern recipe (nanochat's and
# modded-nanogpt's ideas, each a GPTConfig switch in model.py) and Muon for the blocks' matrices (optim.py);
# docs/modern_recipe.md has what each buys. $ python train.py config/train_shakespeare_char_cpu_modern.py
out_dir = 'out-shakespeare-char-cpu-modern'
eval_interval = 100
eval_iters = 20
log_interval = 10
always_save_checkpoint = False

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 12
block_size = 64

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False

rotary = True  # relative positions: nothing to learn, and generation slides past block_size with its cache
qk_norm = True
rmsnorm = True
relu_squared = True
tie_embeddings = False
logit_softcap = 15.0
zero_init_proj = True
embedding_norm = True  # with qk_norm, rmsnorm and no biases: transformers' NanoChat architecture, so export.py works

optimizer = 'muon'
muon_lr = 0.02  # the blocks' matrices (Muon): 0.01 and 0.05 ended 0.024 and 0.026 higher on full val
learning_rate = 6e-3  # embeddings and head (AdamW): 3e-3 ended 0.008 higher, 1e-2 the same
max_iters = 600  # 0.4x the GPT-2 recipe's 1500 steps, to a lower val loss (README)
lr_decay_iters = 600
min_lr = 6e-4
beta2 = 0.99
warmup_iters = 100

device = 'cpu'
compile = False
