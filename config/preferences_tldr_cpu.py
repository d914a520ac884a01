# The summarization chain small and offline, between stages 1 and 2: comparisons of the SFT model's own summaries,
# two per post, labelled by ROUGE-L against the post's first line (the synthetic corpus's "labeller"), as Stiennon
# et al. had people compare samples of the policy PPO starts from. The reward model trains on these and on
# prepare.py's comparisons (real and degenerate candidates): the latter alone left it blind to the SFT model's own
# mistakes (a word garbled mid-line), where PPO queries it, and PPO then raised its score but not ROUGE-L.
# $ python data/preferences/prepare.py config/preferences_tldr_cpu.py      (after config/sft_tldr_cpu.py)
init_from = 'out-sft-tldr-cpu'
prompt_file = 'data/tldr/posts_train.jsonl'
label = 'rouge_l'
min_margin = 0.05  # closer pairs are ties, and dropped
n_pairs = 6000  # about a tenth of the synthetic comparisons
max_new_tokens = 32  # data/tldr/prepare.py's --max_completion_tokens, rlhf.py's
batch_size = 64  # posts sampled together
out_dir = 'data/tldr/sft_comparisons'
