# HappyGPT (minRLHF's first demo), offline on a CPU: PPO makes the character-level Shakespeare model of the
# CPU quickstart write cheerful Shakespeare, rewarded by VADER's sentiment score of each completion.
# $ python data/shakespeare_char/prepare.py && python train.py config/train_shakespeare_char_cpu.py
# $ python rlhf.py config/rlhf_happy_shakespeare.py           (minutes of PPO on a 2-core CPU)
out_dir = 'out-rlhf-happy-shakespeare'
init_from = 'out-shakespeare-char-cpu'  # the quickstart's model: 2 layers x 128, block 64
reward = 'sentiment'

# prompts: 16 characters of Shakespeare (train split), completed with 48 more: the model's whole context
prompt_len = 16
max_new_tokens = 48

max_iters = 130
batch_size = 128
minibatch_size = 32
ppo_epochs = 4
learning_rate = 6e-5  # higher drifts: the val loss rises and the KL grows faster than the reward
min_lr = 6e-6
init_kl_coef = 0.15
target_kl = 6.0  # nats per 48-character completion
kl_horizon = 2000

eval_iters = 200  # val loss on 200 batches of 12 x 64 characters
