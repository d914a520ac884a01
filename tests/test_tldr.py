"""Summarization from human feedback (data/tldr, the SFT / reward model / PPO chain): left-padded batched
generation, batched reward scoring, completions that end at end-of-text, the masked PPO arithmetic, gradient
accumulation, the tiny offline chain end to end (each stage moves its figure the right way), and bad input."""
import json

import numpy as np
import pytest
import torch

import ppo
from checkpoint import make_checkpoint, save_checkpoint
from conftest import assert_one_line_error, run_script
from model import GPT, GPTConfig
from rewards import RewardModel, completion_scores, rouge_l
from tokenizer import Tokenizer

BPE = Tokenizer.gpt2()
EOT = BPE.eot_token
TINY_BPE = dict(n_layer=2, n_head=2, n_embd=32, block_size=96, bias=False, vocab_size=50304, dropout=0.0)
FAST = ['--device=cpu', '--dtype=float32']


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def save_model(gpt, out, **extra):
    """gpt as an out_dir (ckpt.pt with the GPT-2 tokenizer), as train.py or train_reward.py leave one."""
    config = {'dataset': extra.pop('dataset', '')}
    save_checkpoint(make_checkpoint(gpt, torch.optim.SGD(gpt.parameters(), lr=0.0), 0, 9.9, config, BPE, **extra),
                    str(out / 'ckpt.pt'))
    return out


# -----------------------------------------------------------------------------
# batched generation and scoring: padding changes nothing

@pytest.mark.parametrize('rotary', [False, True], ids=['gpt2', 'rotary'])
def test_left_padded_generation_is_each_prompt_generated_alone(rotary):
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=32, vocab_size=64, rotary=rotary)).eval()
    prompts = [[1, 2, 3, 4, 5, 6], [7, 8], [9, 10, 11]]
    P = max(map(len, prompts))
    idx = torch.tensor([[0] * (P - len(p)) + p for p in prompts])
    pad = torch.tensor([P - len(p) for p in prompts])
    together = model.generate(idx, 12, temperature=0, pad=pad)
    assert torch.equal(together, model.generate(idx, 12, temperature=0, pad=pad, use_cache=False))
    for i, p in enumerate(prompts):
        alone = model.generate(torch.tensor([p]), 12, temperature=0)
        assert together[i, P:].tolist() == alone[0, len(p):].tolist()
        h_alone = model.hidden_states(torch.tensor([p]))
        h_padded = model.hidden_states(idx[i:i + 1], pad=pad[i:i + 1])[:, pad[i]:]
        torch.testing.assert_close(h_padded, h_alone, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match='must fit the context'):
        model.generate(idx, 32 - P + 1, pad=pad)


@pytest.mark.parametrize('reduction', ['last', 'sum'])
def test_batched_reward_scores_equal_one_at_a_time(reduction, tmp_path):
    torch.manual_seed(1)
    gpt = GPT(GPTConfig(**{**TINY_BPE, 'block_size': 48}))
    head = torch.nn.Linear(32, 1)  # a head that is not zero, so every score differs
    rm = save_model(gpt, tmp_path, scalar_head=head.state_dict(), scalar_head_role='reward', reward_reduction=reduction)
    prompts = ['POST: a short one\nTL;DR:', 'POST: ' + 'a much longer post, ' * 12 + '\nTL;DR:', 'TL;DR:',
               'POST: a b\nTL;DR:']
    texts = [' one', ' two words here, and then some more of them', ' three', '']
    one_at_a_time = RewardModel(str(rm), batch_size=1)
    batched = RewardModel(str(rm), batch_size=4)
    alone = [one_at_a_time([t], [p])[0] for t, p in zip(texts, prompts)]
    together = batched(texts, prompts)
    np.testing.assert_allclose(together, alone, atol=1e-5, rtol=0)
    assert len(set(np.round(alone, 4))) == 4
    assert batched.truncated == 1  # the long post (61 tokens) loses its oldest tokens to fit the context of 48
    if reduction == 'sum':
        assert alone[3] == 0.0  # an empty completion: the sum over no tokens
    # 'last' reads the scalar at the end-of-text that closes every completion
    model = batched.model
    p, c = BPE.encode(prompts[0]), BPE.encode(texts[0]) + ([EOT] if reduction == 'last' else [])
    _, scalars = model(torch.tensor([p + c]), torch.arange(len(p + c))[None], logits=False)
    expected = scalars[0, -1] if reduction == 'last' else scalars[0, len(p):].sum()
    assert together[0] == pytest.approx(expected.item(), abs=1e-5)
    assert completion_scores(model, [(p, c)], reduction).item() == pytest.approx(expected.item(), abs=1e-6)


def test_completions_end_at_end_of_text():
    torch.manual_seed(2)
    gpt = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=64, bias=True)).eval()
    stop = 5
    with torch.no_grad():  # every position's hidden state points at the stop token: it is sampled every time
        gpt.transformer.ln_f.weight.zero_()
        w = gpt.lm_head.weight[stop]
        gpt.transformer.ln_f.bias.copy_(1e3 * w / w.square().sum())
    seq, starts = ppo.generate_completions(gpt, [[1, 2, 3], [4]], 10, 'cpu', stop_token=stop)
    assert seq.shape == (2, 13) and starts.tolist() == [3, 1]
    assert seq[0, :4].tolist() == [1, 2, 3, stop] and seq[1, :2].tolist() == [4, stop]
    assert not seq[0, 4:].any() and not seq[1, 2:].any()  # every row stopped: generation ended after one token
    mask = ppo.completion_mask(seq, starts, 10, stop)
    assert mask.tolist() == [[1.0] + [0.0] * 9] * 2

    seq = torch.tensor([[1, 2, 7, 8, stop, 9, stop, 0], [3, 7, stop, 0, 0, 0, 0, 0], [4, 7, 7, 7, 7, 7, 0, 0]])
    starts = torch.tensor([2, 1, 1])
    mask = ppo.completion_mask(seq, starts, 5, stop)  # the stop token counts (it is the last action), then nothing
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]
    tok = Tokenizer.char_from_text('abcdefghij')
    tok.eot_token = stop
    assert ppo.completion_texts(tok, seq, starts, 5, mask) == [tok.decode([7, 8]), tok.decode([7]), tok.decode([7] * 5)]


def test_masked_ppo_arithmetic_ignores_what_follows_the_end():
    torch.manual_seed(3)
    mask = torch.tensor([[1.0, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    logp, ref_logp = torch.randn(2, 5), torch.randn(2, 5)
    rewards, kl = ppo.kl_penalized_rewards(torch.tensor([10.0, 20.0]), logp, ref_logp, 0.5, mask)
    assert not kl[0, 3:].any() and not rewards[0, 3:].any()
    assert rewards[0, 2] == pytest.approx(10.0 - 0.5 * (logp[0, 2] - ref_logp[0, 2]).item())  # the score on the end
    assert rewards[1, 4] == pytest.approx(20.0 - 0.5 * (logp[1, 4] - ref_logp[1, 4]).item())
    values = torch.randn(2, 5)
    adv, ret = ppo.gae(rewards, values, 1.0, 0.95, mask)
    adv_short, _ = ppo.gae(rewards[:1, :3], values[:1, :3], 1.0, 0.95)  # the first row as if it were 3 tokens long
    torch.testing.assert_close(adv[0, :3], adv_short[0])
    assert not adv[0, 3:].any()
    white = ppo.whiten(adv, mask)
    kept = white[mask.bool()]
    assert kept.mean().abs() < 1e-6 and kept.std().item() == pytest.approx(1.0, abs=1e-5) and not white[0, 3:].any()
    # the losses are means over the kept tokens: the padded tail can hold anything
    new_logp = logp + 0.1 * torch.randn(2, 5)
    junk = new_logp.clone()
    junk[0, 3:] = 100.0
    loss, _ = ppo.policy_loss(new_logp, logp, white, 0.2, mask)
    assert ppo.policy_loss(junk, logp, white, 0.2, mask)[0] == loss
    flat = ppo.policy_loss(new_logp[mask.bool()][None], logp[mask.bool()][None], kept[None], 0.2)[0]
    torch.testing.assert_close(loss, flat)


def test_rouge_l_is_the_longest_common_subsequence_f_measure():
    # 'the cat sat on the mat' against 'the cat on a mat': LCS 'the cat on mat', 4 words; P = 4/5, R = 4/6
    precision, recall = 4 / 5, 4 / 6
    assert rouge_l(['the cat on a mat'], ['the cat sat on the mat'])[0] == pytest.approx(
        2 * precision * recall / (precision + recall))
    assert rouge_l(['Sitting cats'], ['the cat sits'])[0] == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))  # stems


# -----------------------------------------------------------------------------
# the chain, tiny and offline: synthetic posts -> SFT -> reward model -> PPO

SFT_ARGS = ['--compile=False', '--n_layer=2', '--n_head=2', '--n_embd=32', '--block_size=96', '--bias=False',
            '--dropout=0.0', '--batch_size=8', '--gradient_accumulation_steps=1', '--warmup_iters=10',
            '--learning_rate=1e-2', '--min_lr=1e-3', '--eval_iters=5', '--log_interval=50']


def run_chain(root):
    """The README's offline run, tiny: the synthetic corpus, SFT, a reward model, PPO, and an --eval_only."""
    data = root / 'data'
    run_script('data/tldr/prepare.py', '--synthetic=True', '--max_posts=300', '--block_size=96',
               '--max_completion_tokens=24', f'--out_dir={data}')
    run_script('train.py', f'--dataset={data}', f'--out_dir={root / "sft"}', *FAST, *SFT_ARGS, '--max_iters=100',
               '--lr_decay_iters=100', '--eval_interval=100')
    # comparisons of the SFT model's own summaries, by ROUGE-L against the reference (config/preferences_tldr_cpu.py)
    run_script('data/preferences/prepare.py', f'--init_from={root / "sft"}', f'--out_dir={root / "pairs"}',
               f'--prompt_file={data / "posts_train.jsonl"}', '--label=rouge_l', '--min_margin=0.05', '--n_pairs=40',
               '--max_new_tokens=24', '--batch_size=32')
    # two reward models of different seeds; PPO scores with their mean (config/rlhf_tldr_cpu.py's three)
    for name, seed in (('rm', 1337), ('rm2', 2)):
        run_script('train_reward.py', f'--init_from={root / "sft"}', f'--out_dir={root / name}', f'--seed={seed}',
                   *FAST, f'--train_file={data / "comparisons_train.jsonl"},{root / "pairs" / "train.jsonl"}',
                   f'--val_file={data / "comparisons_val.jsonl"},{root / "pairs" / "val.jsonl"}',
                   '--reward_reduction=sum', '--max_iters=40', '--eval_interval=40', '--batch_size=16',
                   '--learning_rate=1e-3', '--dropout=0.0')
    ppo_args = [f'--reward={root / "rm"},{root / "rm2"}', f'--prompt_file={data / "posts_train.jsonl"}',
                f'--eval_prompt_file={data / "posts_val.jsonl"}', '--max_new_tokens=24', '--eval_samples=48',
                '--eval_iters=2', '--batch_size=16', *FAST]
    proc = run_script('rlhf.py', f'--init_from={root / "sft"}', f'--out_dir={root / "ppo"}', *ppo_args, '--max_iters=5',
               '--minibatch_size=8', '--micro_batch_size=4', '--learning_rate=3e-3', '--target_kl=3.0',
               '--save_interval=0')
    # --eval_only of the SFT model against itself (the README's untrained-vs-SFT command, cheaply), scored by the
    # ground truth instead of the reward model
    run_script('rlhf.py', f'--init_from={root / "sft"}', f'--out_dir={root / "sft"}', *ppo_args, '--eval_only=True',
               '--eval_samples=8', '--reward=rouge_l')
    return proc.stdout


def test_the_offline_chain_end_to_end(tmp_path):
    # one test, not a fixture shared by several: under pytest -n 2 a second worker would wait idle for the chain
    root = tmp_path
    ppo_stdout = run_chain(root)
    # the synthetic corpus: posts of tiny Shakespeare lines, each summarized by its first line
    data = root / 'data'
    posts = read_jsonl(data / 'posts_train.jsonl')
    assert len(posts) > 250
    for post in posts:
        lines = post['prompt'].split('\n')
        assert lines[0].startswith('POST: ') and lines[-1] == 'TL;DR:' and 4 <= len(lines) <= 7
        assert post['completion'] == ' ' + lines[0][len('POST: '):]
    # the SFT tokens are the posts in order, each prompt + completion + <|endoftext|>, the mask on the completion
    ids = np.fromfile(data / 'train.bin', dtype=np.uint16)
    mask = np.fromfile(data / 'train_mask.bin', dtype=np.uint8)
    p, c = BPE.encode(posts[0]['prompt']), BPE.encode(posts[0]['completion']) + [EOT]
    assert ids[:len(p + c)].tolist() == p + c and mask[:len(p + c)].tolist() == [0] * len(p) + [1] * len(c)
    assert ids.size == mask.size == sum(len(BPE.encode(r['prompt'] + r['completion'])) + 1 for r in posts)
    # each comparison prefers the candidate closer to the first line, of one post, and any real summary to a
    # degenerate one (empty, the first word alone, a fragment repeated), which is never chosen
    val_prompts = {r['prompt'] for r in read_jsonl(data / 'posts_val.jsonl')}
    kinds = set()
    for pair in read_jsonl(data / 'comparisons_val.jsonl')[:300]:
        assert pair['prompt'] in val_prompts
        first = pair['prompt'].split('\n')[0][len('POST: '):]
        words = first.split()
        degenerate = {'': 'empty', ' ' + words[0]: 'cut', ' ' + ' '.join(words[:2] * 4): 'repeated'}
        assert pair['chosen'] not in degenerate, pair
        if pair['rejected'] in degenerate:
            kinds.add(degenerate[pair['rejected']])
        else:
            assert rouge_l([pair['chosen']], [first])[0] > rouge_l([pair['rejected']], [first])[0], pair
    assert kinds == {'empty', 'cut', 'repeated'}, kinds

    # the SFT model's own summaries of training posts, two per post, the one closer to the reference chosen
    references = {r['prompt']: r['completion'] for r in posts}
    sampled = read_jsonl(root / 'pairs' / 'train.jsonl') + read_jsonl(root / 'pairs' / 'val.jsonl')
    assert len(sampled) == 40
    for pair in sampled:
        reference = references[pair['prompt']]
        chosen, rejected = rouge_l([pair['chosen'], pair['rejected']], [reference, reference])
        assert [chosen, rejected] == [pair['chosen_score'], pair['rejected_score']] and chosen >= rejected + 0.05
        assert '<|endoftext|>' not in pair['chosen'] + pair['rejected']

    # SFT: from the untrained model's loss on the held-out summaries (its first eval) to far less, and to summaries
    # that share words with the references and stop (the untrained model's share ~none and never stop: the README)
    sft_log = read_jsonl(root / 'sft' / 'log.jsonl')
    assert sft_log[0]['val_loss'] > 10.5 and sft_log[-1]['val_loss'] < sft_log[0]['val_loss'] - 2, sft_log
    after = json.loads((root / 'ppo' / 'eval.json').read_text())  # 'start' is the SFT model
    assert after['rouge_l_start'] > 0.015 and after['length_start'] < 24 / 2, after
    # the reward model is trained on the comparisons and scored on every held-out pair. At this size and length it
    # stays near chance on them (the README's run: 69.6%); test_reward_model_at_the_end_of_text_learns_a_preference
    # checks that one learns. It sums its scalars ('sum'), so that the policy has a reward it can move at this size.
    rm_log = read_jsonl(root / 'rm' / 'log.jsonl')
    assert [r['iter'] for r in rm_log] == [0, 40] and rm_log[-1]['val_loss'] < 0.75, rm_log
    # its accuracy on each held-out file (the synthetic comparisons, the sampled ones), and on both together
    sizes = {str(data / 'comparisons_val.jsonl'): len(read_jsonl(data / 'comparisons_val.jsonl')),
             str(root / 'pairs' / 'val.jsonl'): 4}
    by_file = rm_log[-1]['val_accuracy_by_file']
    assert set(by_file) == set(sizes) and len(read_jsonl(root / 'pairs' / 'val.jsonl')) == 4
    together = sum(by_file[k] * n for k, n in sizes.items()) / sum(sizes.values())
    assert rm_log[-1]['val_accuracy'] == pytest.approx(together)
    # PPO raises the reward model's score on held-out posts, with the KL to the SFT model on its leash (at most 1.5x
    # target_kl) and summaries that keep at least half their median length
    assert after['reward_policy'] > after['reward_start'], after
    assert 0 < after['kl'] <= 1.5 * after['target_kl'], after
    assert after['length_median_policy'] >= 0.5 * after['length_median_start'], after
    assert after['eval_samples'] == 48
    # the end-of-run line judges the policy by ROUGE-L, what the reward model stands in for: a warning where it fell.
    # This tiny SFT model writes word salad (ROUGE-L ~0.04, words shared by chance) and its reward model is near
    # chance, so ROUGE-L can go either way here; the offline run's 3 seeds (docs/rlhf.md) raise it
    ratio = after['length_median_policy'] / after['length_median_start']
    overfitted = after['rouge_l_policy'] < after['rouge_l_start'] or not 0.5 <= ratio <= 2
    assert any('overfitted the reward model' in w for w in after['warnings']) == overfitted, after
    assert 'the policy against the start: reward' in ppo_stdout
    assert 'PPO sees (reward - mean) / std' in ppo_stdout  # the mean of reward models is normalized as one would be
    assert [line for line in ppo_stdout.splitlines() if line.startswith('warning: ')] == [
        f'warning: {w}' for w in after['warnings']]
    itself = json.loads((root / 'sft' / 'eval.json').read_text())  # the same samples: the same scores, no KL
    assert itself['eval_samples'] == 8 and itself['kl'] == 0.0 and itself['rouge_l_start'] == itself['rouge_l_policy']
    assert itself['reward_start'] == itself['reward_policy'] and itself['length_start'] == itself['length_policy']
    assert itself['reward_start'] == itself['rouge_l_start']  # reward='rouge_l' is ROUGE-L against each reference
    assert itself['warnings'] == []
    log = read_jsonl(root / 'ppo' / 'log.jsonl')
    assert len(log) == 5 and all(0 < r['length'] <= 24 for r in log)


def test_gradient_accumulation_gives_the_gradients_of_the_whole_minibatch():
    import contextlib
    torch.manual_seed(4)
    model = ppo.ScalarHeadGPT(GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=32, vocab_size=64)))
    B, N = 6, 5
    seq = torch.randint(0, 64, (B, 12))
    starts = torch.tensor([3, 4, 5, 3, 6, 7])
    pos = ppo.completion_positions(starts, N)
    mask = (torch.arange(N) < torch.tensor([5, 2, 4, 1, 5, 3])[:, None]).float()  # completions of unequal lengths
    batch = dict(seq=seq, pos=pos, tokens=seq.gather(1, pos + 1), mask=mask, logp=-3 + torch.randn(B, N),
                 values=torch.randn(B, N), advantages=torch.randn(B, N), returns=torch.randn(B, N))
    rows = torch.tensor([5, 0, 3, 1, 4, 2])
    grads = {}
    for micro in (6, 2, 1):
        model.zero_grad()
        stats = ppo.accumulate_gradients(model, batch, rows, micro, cliprange=0.2, cliprange_value=0.2, vf_coef=0.1,
                                         ctx=contextlib.nullcontext())
        grads[micro] = (stats, [p.grad.clone() for p in model.parameters()])
    for micro in (2, 1):
        torch.testing.assert_close(grads[micro][0], grads[6][0])
        for g, g_whole in zip(grads[micro][1], grads[6][1]):
            torch.testing.assert_close(g, g_whole, atol=1e-6, rtol=1e-5)
    assert max(g.abs().max() for g in grads[6][1]) > 0


def test_reward_model_at_the_end_of_text_learns_a_preference(tmp_path):
    # chosen summaries end in a vowel, rejected ones in a consonant: what the scalar at the last token can see
    rng = np.random.default_rng(0)
    letters = list('abcdefghijklmnopqrstuvwxyz ')
    for name, n in (('train', 256), ('val', 64)):
        with open(tmp_path / f'{name}.jsonl', 'w') as f:
            for _ in range(n):
                stem = ''.join(rng.choice(letters, size=5))
                f.write(json.dumps({'prompt': ''.join(rng.choice(letters, size=8)) + ' TL;DR:', 'chosen': stem + 'a',
                                    'rejected': stem + 'k'}) + '\n')
    rm = tmp_path / 'rm'
    run_script('train_reward.py', '--dataset=shakespeare_char', f'--out_dir={rm}', *FAST, '--n_layer=1', '--n_embd=32',
               '--block_size=32', f'--train_file={tmp_path / "train.jsonl"}', f'--val_file={tmp_path / "val.jsonl"}',
               '--reward_reduction=last', '--max_iters=40', '--eval_interval=20', '--batch_size=16',
               '--learning_rate=3e-3', '--dropout=0.0')
    log = read_jsonl(rm / 'log.jsonl')
    assert log[-1]['val_accuracy'] >= 0.9, log
    reward = RewardModel(str(rm))
    assert reward.reduction == 'last'
    good, bad = reward([' hello', ' hellk'], ['abc TL;DR:', 'abc TL;DR:'])
    assert good > bad


# -----------------------------------------------------------------------------
# bad input

def test_tldr_bad_input(tmp_path):
    # a comparison whose chosen and rejected summarize different posts is left out and counted
    rows = [[{'prompt': f'POST: post {i}', 'chosen': 'TL;DR: a', 'rejected': 'TL;DR: b'},  # CarperAI's form
             {'chosen': f'POST: text {i}\nTL;DR: a', 'rejected': f'POST: text {i}\nTL;DR: b'},  # whole texts
             {'chosen': f'POST: {i}\nTL;DR: a', 'rejected': f'POST: other {i}\nTL;DR: b'},  # two posts
             {'prompt': f'POST: post {i}', 'chosen': f'POST: post {i} TL;DR: a', 'rejected': 'POST: x TL;DR: b'}]
            for i in range(20)]
    posts = [{'prompt': f'POST: post number {i}\nTL;DR:', 'label': f'number {i}'} for i in range(40)]
    posts += [{'prompt': 'POST: nothing to say\nTL;DR:', 'label': '  '},
              {'prompt': 'POST: ' + 'long ' * 200, 'label': 'x'}]
    (tmp_path / 'posts.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in posts))
    (tmp_path / 'pairs.jsonl').write_text(''.join(json.dumps(r) + '\n' for four in rows for r in four))
    proc = run_script('data/tldr/prepare.py', f'--input={tmp_path / "posts.jsonl"}',
                      f'--comparisons={tmp_path / "pairs.jsonl"}', '--block_size=128', '--max_completion_tokens=16',
                      '--val_fraction=0.3', f'--out_dir={tmp_path / "out"}')
    assert 'left out 1 examples: an empty summary' in proc.stdout
    assert 'too long for the context' in proc.stdout
    left_out = [line for line in proc.stdout.splitlines() if 'do not summarize the same post' in line]
    assert sum(int(line.split('left out ')[1].split(' of')[0]) for line in left_out) == 40, proc.stdout
    pairs = (read_jsonl(tmp_path / 'out' / 'comparisons_train.jsonl')
             + read_jsonl(tmp_path / 'out' / 'comparisons_val.jsonl'))
    assert sorted(p['prompt'] for p in pairs) == sorted([f'POST: post {i}\nTL;DR:' for i in range(20)] +
                                                        [f'POST: text {i}\nTL;DR:' for i in range(20)])
    assert all(p['chosen'] == ' a' and p['rejected'] == ' b' for p in pairs)
    kept = read_jsonl(tmp_path / 'out' / 'posts_train.jsonl') + read_jsonl(tmp_path / 'out' / 'posts_val.jsonl')
    assert len(kept) == 40 and all(r['completion'].startswith(' number ') for r in kept)
    # nothing usable at all: one line, and nothing written
    (tmp_path / 'bad.jsonl').write_text(''.join(json.dumps(four[2]) + '\n' for four in rows))
    proc = run_script('data/tldr/prepare.py', f'--input={tmp_path / "posts.jsonl"}',
                      f'--comparisons={tmp_path / "bad.jsonl"}', f'--out_dir={tmp_path / "none"}', check=False)
    assert_one_line_error(proc, 'no usable')
    assert not (tmp_path / 'none').exists()
