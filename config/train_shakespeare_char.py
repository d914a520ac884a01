# a baby GPT on tiny Shakespeare, character level: ~3 minutes on an A100, val loss ~1.47
# (prepare first: python data/shakespeare_char/prepare.py)
out_dir = 'out-shakespeare-char'
eval_interval = 250  # evaluate often: this small model overfits
eval_iters = 200
log_interval = 10
always_save_checkpoint = False  # keep only the checkpoint with the best val loss

wandb_log = False
wandb_project = 'shakespeare-char'
wandb_run_name = 'mini-gpt'

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 64
block_size = 256  # context of up to 256 previous characters

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2

learning_rate = 1e-3  # small networks tolerate a higher learning rate
max_iters = 5000
lr_decay_iters = 5000  # usually equal to max_iters
min_lr = 1e-4  # learning_rate / 10
beta2 = 0.99  # a bit higher: few tokens per iteration make the second moment noisy
warmup_iters = 100
