# evaluate OpenAI's GPT-2 (350M) on OpenWebText: prints train and val loss, then exits
# $ python train.py eval_gpt2_medium
# offline: add --init_from=/path/to/a/local/hugging-face/gpt2-medium/directory
batch_size = 8
eval_iters = 500  # more batches for a more precise estimate
eval_only = True
wandb_log = False
init_from = 'gpt2-medium'
