"""rlhf.py, train_reward.py, data/preferences/prepare.py and their pieces (ppo.py, rewards.py): the PPO
arithmetic on hand-worked examples, tiny runs that learn a trivial reward and a trivial preference,
the checkpoint's compatibility with sample.py / train.py, and bad input."""
import copy
import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import ppo
from checkpoint import load_model, save_checkpoint, tokenizer_for
from conftest import REPO, assert_one_line_error, run_script, script_env
from configurator import UserError
from model import GPT, GPTConfig
from rewards import CharCount, RewardModel, bradley_terry_loss, get_reward

TINY_ARGS = dict(n_layer=2, n_head=2, n_embd=32, block_size=32, bias=False, vocab_size=65, dropout=0.0)
FAST = ['--device=cpu', '--eval_iters=2', '--log_interval=1']
ONE_THREAD = {'OMP_NUM_THREADS': '1'}  # tiny models: one thread is faster, and far faster on a busy machine


def run(*args, check=True):
    return run_script(*args, check=check, env=ONE_THREAD)


def tiny_gpt(seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**TINY_ARGS))


@pytest.fixture(scope='module')
def tiny_start(shakespeare_char, tmp_path_factory):
    """A random-init tiny character-level GPT saved as an out_dir, as train.py would leave it."""
    out = tmp_path_factory.mktemp('start')
    save_checkpoint({'model': tiny_gpt().state_dict(), 'model_args': TINY_ARGS, 'iter_num': 0, 'best_val_loss': 4.2,
                     'config': {'dataset': shakespeare_char}}, str(out / 'ckpt.pt'))
    return out


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


# -----------------------------------------------------------------------------
# the arithmetic

def test_gae_on_hand_worked_examples():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 0.5, 0.5], [0.0, 0.0, 0.0]])
    # row 0, gamma 0.9, lambda 0.5: deltas (-0.05, -0.05, 0.5) from r_t + 0.9 V_{t+1} - V_t with V_3 = 0;
    # A_2 = 0.5, A_1 = -0.05 + 0.45 * 0.5 = 0.175, A_0 = -0.05 + 0.45 * 0.175 = 0.02875
    advantages, returns = ppo.gae(rewards[:1], values[:1], gamma=0.9, lam=0.5)
    torch.testing.assert_close(advantages, torch.tensor([[0.02875, 0.175, 0.5]]))
    torch.testing.assert_close(returns, torch.tensor([[0.52875, 0.675, 1.0]]))
    # gamma = lambda = 1 and V = 0: the advantage is the sum of the rewards still to come; rows are independent
    advantages, returns = ppo.gae(rewards, values, gamma=1.0, lam=1.0)
    torch.testing.assert_close(advantages[1], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(returns[1], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(advantages[0], torch.tensor([0.5, 0.5, 0.5]))  # 1 - V_t at every t


def test_clipped_policy_objective_has_no_gradient_outside_the_clip_range():
    # ratios 1.5 and 1.1 with advantage +1, 0.5 and 1.5 with advantage -1; clip range 0.2
    ratios = torch.tensor([1.5, 1.1, 0.5, 1.5])
    logp = torch.log(ratios).requires_grad_(True)
    advantages = torch.tensor([1.0, 1.0, -1.0, -1.0])
    loss, clipfrac = ppo.policy_loss(logp, torch.zeros(4), advantages, cliprange=0.2)
    loss.backward()
    # d/dlogp of -A * ratio / 4 = -A * ratio / 4 where unclipped; 0 where the ratio left the range in the
    # direction its advantage pushes (1.5 > 1.2 with A > 0, 0.5 < 0.8 with A < 0)
    torch.testing.assert_close(logp.grad, torch.tensor([0.0, -1.1 / 4, 0.0, 1.5 / 4]))
    assert clipfrac.item() == 0.5
    torch.testing.assert_close(loss, torch.tensor((-1.2 - 1.1 + 0.8 + 1.5) / 4))


def test_clipped_value_loss_has_no_gradient_once_clipped_away_from_the_return():
    values = torch.tensor([0.5, 0.1], requires_grad=True)
    # old values 0, returns 1, clip 0.2: the first is clipped to 0.2, whose loss (0.64) beats 0.25 -> no gradient
    loss = ppo.value_loss(values, torch.zeros(2), torch.ones(2), cliprange_value=0.2)
    loss.backward()
    torch.testing.assert_close(values.grad, torch.tensor([0.0, (0.1 - 1.0) / 2]))
    torch.testing.assert_close(loss, torch.tensor(0.5 * (0.64 + 0.81) / 2))


def test_adaptive_kl_controller_moves_beta_by_at_most_20_percent_per_horizon():
    ctl = ppo.AdaptiveKLController(init_kl_coef=0.1, target=6.0, horizon=100)
    ctl.update(kl=12.0, n_steps=10)  # error (12 - 6) / 6 = 1, clipped to 0.2: beta *= 1 + 0.2 * 10 / 100
    assert ctl.value == pytest.approx(0.102)
    ctl.update(kl=5.4, n_steps=10)  # error -0.1: beta *= 1 - 0.1 * 0.1
    assert ctl.value == pytest.approx(0.102 * 0.99)


def test_value_head_model_reads_the_gpts_own_hidden_states():
    gpt = tiny_gpt()
    model = ppo.ScalarHeadGPT(gpt)
    idx = torch.randint(0, 65, (3, 20))
    pos = torch.tensor([[4, 19], [0, 7], [11, 12]])
    logits, values = model(idx, pos)
    full, _ = gpt(idx, all_logits=True)
    torch.testing.assert_close(logits, full.gather(1, pos[:, :, None].expand(-1, -1, 65)))
    assert values.shape == (3, 2) and not values.any()  # the head starts at zero
    assert not any(k.startswith('head') for k in gpt.state_dict())


def test_kl_estimate_is_zero_for_the_same_weights_and_not_for_others():
    policy = tiny_gpt()
    reference = copy.deepcopy(policy)
    torch.manual_seed(1)
    prompts = [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]  # two lengths: padding and per-row starts
    seq, starts = ppo.generate_completions(policy, prompts, 10, 'cpu')
    assert seq.shape == (3, 14) and starts.tolist() == [4, 4, 2]
    assert seq[2, :2].tolist() == [9, 10] and not seq[2, 12:].any()
    logp = ppo.completion_logprobs(policy, seq, starts, 10)
    rewards, kl = ppo.kl_penalized_rewards(torch.tensor([1.0, 2.0, 3.0]), logp,
                                           ppo.completion_logprobs(reference, seq, starts, 10), kl_coef=0.5)
    assert torch.equal(kl, torch.zeros(3, 10))
    assert torch.equal(rewards[:, -1], torch.tensor([1.0, 2.0, 3.0])) and not rewards[:, :-1].any()
    with torch.no_grad():
        reference.lm_head.weight.add_(0.1 * torch.randn_like(reference.lm_head.weight))
    _, kl = ppo.kl_penalized_rewards(torch.zeros(3), logp, ppo.completion_logprobs(reference, seq, starts, 10), 0.5)
    assert kl.abs().min() > 0


def test_bradley_terry_loss_and_accuracy():
    loss, acc = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    # -log sigmoid(1) = log(1 + e^-1), -log sigmoid(-1) = log(1 + e)
    assert loss.item() == pytest.approx((np.log1p(np.exp(-1)) + np.log1p(np.exp(1))) / 2)
    assert acc.item() == 0.5


def test_rewards_registry():
    assert get_reward('count:ab')(['abcab', 'c'], ['', '']) == [4.0, 0.0]
    ground_truth = get_reward('rouge_l')
    ground_truth.add(['P1', 'P2'], ['the cat sat', 'a dog'])
    # 'dog' against 'a dog': precision 1, recall 1/2, F1 2/3
    assert ground_truth(['the cat sat', 'dog'], ['P1', 'P2']) == pytest.approx([1.0, 2 / 3])
    with pytest.raises(UserError, match="no reference completion for the prompt 'P3'"):
        ground_truth(['a'], ['P3'])
    happy, sad = get_reward('sentiment')(['What a happy, lovely day!', 'A terrible, hateful death.'], ['', ''])
    assert happy > 0.5 > -0.5 > sad
    assert get_reward('count:,')(['a,b,'], ['']) == [2.0]  # a comma to count, not two rewards
    # comma-separated (spaces allowed): the mean of the parts ('the cat sat': ROUGE-L 1, sentiment 0)
    mean = get_reward('rouge_l, sentiment')
    mean.members[0].add(['P1'], ['the cat sat'])
    assert mean(['the cat sat', 'dog'], ['P1', 'P1']) == pytest.approx([0.5, 0.0])
    with pytest.raises(UserError, match="unknown reward 'no_such_dir'"):
        get_reward('sentiment,no_such_dir')


# -----------------------------------------------------------------------------
# the scripts

def test_tiny_ppo_run_raises_a_trivial_reward(tiny_start, tmp_path):
    out = tmp_path / 'ppo'
    run('rlhf.py', f'--init_from={tiny_start}', f'--out_dir={out}', '--reward=count:e', *FAST,
               '--max_iters=12', '--batch_size=32', '--minibatch_size=16', '--prompt_len=4', '--max_new_tokens=12',
               '--learning_rate=3e-3', '--eval_samples=64', '--save_interval=0')
    log = read_jsonl(out / 'log.jsonl')
    assert [r['iter'] for r in log] == list(range(1, 13))
    for key in ('reward', 'kl', 'entropy', 'clipfrac', 'value_loss', 'kl_coef'):
        assert all(np.isfinite(r[key]) for r in log), key
    assert log[0]['kl'] == pytest.approx(0.0, abs=1e-4)  # the first rollout comes from the reference itself
    result = json.loads((out / 'eval.json').read_text())
    # a random model writes 'e' about once in 65 characters: ~0.2 per 12-character completion
    assert result['reward_start'] < 1.0 and result['reward_policy'] > result['reward_start'] + 1.0, result
    assert result['kl'] > 0
    # the checkpoint is an ordinary one: a plain GPT in 'model', the value head kept apart
    model, ckpt = load_model('resume', str(out))
    assert not any('head' in k and 'lm_head' not in k for k in ckpt['model'])
    assert ckpt['scalar_head_role'] == 'value' and set(ckpt['scalar_head']) == {'weight', 'bias'}
    assert ckpt['iter_num'] == 12 and tokenizer_for(ckpt).vocab_size == 65
    assert ckpt['reward_normalization'] == {'mean': 0.0, 'std': 1.0}  # 'auto': a fixed-scale reward stays as it is
    proc = run('train.py', '--init_from=resume', '--eval_only=True', f'--out_dir={out}',
                      '--dataset=shakespeare_char', '--device=cpu', '--compile=False', '--block_size=32',
                      '--eval_iters=2', '--batch_size=4')
    assert 'val loss' in proc.stdout


def test_interrupted_ppo_run_saves_the_policy_so_far(tiny_start, tmp_path):
    out = tmp_path / 'ppo'
    cmd = [sys.executable, 'rlhf.py', f'--init_from={tiny_start}', f'--out_dir={out}', '--reward=count:e', *FAST,
           '--max_iters=500', '--batch_size=8', '--minibatch_size=4', '--prompt_len=4', '--max_new_tokens=8',
           '--save_interval=0']
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=script_env(ONE_THREAD))
    for line in proc.stdout:  # SIGTERM (a scheduler pre-empting the job) once iteration 3 is logged
        if line.startswith('iter 3:'):
            proc.send_signal(signal.SIGTERM)
            break
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and 'stopped by signal after iteration' in rest, rest + err
    ckpt = load_model('resume', str(out))[1]
    assert 3 <= ckpt['iter_num'] < 500 and len(read_jsonl(out / 'log.jsonl')) == ckpt['iter_num']
    assert not (out / 'eval.json').exists()  # stopped before the evaluation: --eval_only=True runs it


def test_reward_model_learns_a_trivial_preference_and_drives_ppo(tiny_start, tmp_path):
    # chosen completions are vowels, rejected ones consonants, after random lowercase prompts
    rng = np.random.default_rng(0)
    def word(letters, n):
        return ''.join(rng.choice(list(letters), size=n))
    for name, n in (('train', 256), ('val', 64)):
        with open(tmp_path / f'{name}.jsonl', 'w') as f:
            for _ in range(n):
                f.write(json.dumps({'prompt': word('abcdefghijklmnopqrstuvwxyz ', 8),
                                    'chosen': word('aeiou', 6), 'rejected': word('bcdfghklmnprst', 6)}) + '\n')
    rm = tmp_path / 'rm'
    run('train_reward.py', f'--init_from={tiny_start}', f'--out_dir={rm}', f'--train_file={tmp_path / "train.jsonl"}',
               f'--val_file={tmp_path / "val.jsonl"}', '--max_iters=30', '--eval_interval=15', '--batch_size=16',
               '--learning_rate=3e-3', '--dropout=0.0', '--device=cpu')
    log = read_jsonl(rm / 'log.jsonl')
    assert log[0]['iter'] == 0 and log[-1]['iter'] == 30
    assert log[-1]['val_accuracy'] >= 0.9, log
    reward = RewardModel(str(rm))
    vowels, consonants = reward(['aeiuoa', 'bcdfgh'], ['hello wo', 'hello wo'])
    assert vowels > consonants
    # rlhf.py takes the reward model by its out_dir, and normalizes its arbitrary scale on the start's samples
    out = tmp_path / 'ppo'
    run('rlhf.py', f'--init_from={tiny_start}', f'--out_dir={out}', f'--reward={rm}', *FAST, '--max_iters=2',
        '--batch_size=8', '--minibatch_size=4', '--prompt_len=4', '--max_new_tokens=8', '--eval_samples=32')
    assert len(read_jsonl(out / 'log.jsonl')) == 2
    norm = load_model('resume', str(out))[1]['reward_normalization']  # over 2 x 8 samples of the start
    # checked against the reward's statistics on other samples of the start, found apart from the normalization:
    # the evaluation's mean over 32 fresh ones, and the spread of the 8 it saves, scored here
    result = json.loads((out / 'eval.json').read_text())
    prompts, texts = zip(*(s.split(' | ', 1) for s in result['samples']['start']))
    scores = reward(list(texts), list(prompts))
    assert abs(result['reward_start'] - norm['mean']) < 3 * norm['std'] * (1 / 16 + 1 / 32) ** 0.5, (result, norm)
    assert 1 / 3 < np.std(scores, ddof=1) / norm['std'] < 3, (scores, norm)


def test_preference_data_follows_its_labelling_rule(tiny_start, tmp_path):
    run('data/preferences/prepare.py', f'--init_from={tiny_start}', f'--out_dir={tmp_path}', '--label=count:e',
               '--min_margin=1.0', '--n_pairs=20', '--val_fraction=0.25', '--prompt_len=4', '--max_new_tokens=24',
               '--batch_size=64')
    train, val = read_jsonl(tmp_path / 'train.jsonl'), read_jsonl(tmp_path / 'val.jsonl')
    assert len(train) == 15 and len(val) == 5
    count = CharCount('e')
    for pair in train + val:
        assert len(pair['prompt']) == 4 and len(pair['chosen']) == len(pair['rejected']) == 24
        assert [pair['chosen_score'], pair['rejected_score']] == count([pair['chosen'], pair['rejected']], ['', ''])
        assert pair['chosen_score'] >= pair['rejected_score'] + 1.0


# -----------------------------------------------------------------------------
# bad input: one clear line each

def test_unknown_reward_name(tiny_start, tmp_path):
    proc = run('rlhf.py', f'--init_from={tiny_start}', f'--out_dir={tmp_path}', '--reward=happiness', check=False)
    assert_one_line_error(proc, "unknown reward 'happiness'", 'sentiment')


def test_preference_file_with_a_missing_field(tiny_start, tmp_path):
    bad = tmp_path / 'bad.jsonl'
    bad.write_text(json.dumps({'prompt': 'a', 'chosen': 'b', 'rejected': 'c'}) + '\n' +
                   json.dumps({'prompt': 'a', 'chosen': 'b'}) + '\n')
    proc = run('train_reward.py', f'--init_from={tiny_start}', f'--out_dir={tmp_path / "rm"}',
                      f'--train_file={bad}', f'--val_file={bad}', check=False)
    assert_one_line_error(proc, f'{bad}:2', 'rejected')
    # an empty completion is a fair candidate (a policy can write one); the same completion on both sides is not
    bad.write_text(json.dumps({'prompt': 'a', 'chosen': 'b', 'rejected': ''}) + '\n' +
                   json.dumps({'prompt': 'a', 'chosen': 'b', 'rejected': 'b'}) + '\n')
    proc = run('train_reward.py', f'--init_from={tiny_start}', f'--out_dir={tmp_path / "rm"}',
               f'--train_file={bad}', f'--val_file={bad}', check=False)
    assert_one_line_error(proc, f'{bad}:2', 'the same completion')


def test_prompt_longer_than_the_context(tiny_start, tmp_path):
    prompts = tmp_path / 'prompts.txt'
    prompts.write_text('To be, or not to be\n' + 'x' * 30 + '\n')
    proc = run('rlhf.py', f'--init_from={tiny_start}', f'--out_dir={tmp_path}', f'--prompt_file={prompts}',
                      '--max_new_tokens=8', check=False)
    assert_one_line_error(proc, f'{prompts}:2', '30 tokens', 'context of 32')
    proc = run('rlhf.py', f'--init_from={tiny_start}', f'--out_dir={tmp_path}', '--prompt_len=30',
                      '--max_new_tokens=8', check=False)
    assert_one_line_error(proc, 'prompt_len=30', 'context of 32')


def test_preference_data_with_an_unreachable_margin(tiny_start, tmp_path):
    proc = run('data/preferences/prepare.py', f'--init_from={tiny_start}', f'--out_dir={tmp_path}', '--label=count:e',
               '--min_margin=100.0', '--n_pairs=20', '--prompt_len=4', '--max_new_tokens=8', '--batch_size=16',
               check=False)
    assert_one_line_error(proc, 'min_margin=100.0', 'lower min_margin')
    assert not (tmp_path / 'train.jsonl').exists()


def test_rouge_l_labels_need_references(tiny_start, tmp_path):
    # ROUGE-L scores a completion against its prompt's reference: windows of a dataset and a .txt file have none
    proc = run('data/preferences/prepare.py', f'--init_from={tiny_start}', f'--out_dir={tmp_path}', '--label=rouge_l',
               check=False)
    assert_one_line_error(proc, "label='rouge_l'", 'prompt_file')
    prompts = tmp_path / 'prompts.txt'
    prompts.write_text('To be, or not\n')
    proc = run('data/preferences/prepare.py', f'--init_from={tiny_start}', f'--out_dir={tmp_path}', '--label=rouge_l',
               f'--prompt_file={prompts}', '--max_new_tokens=8', check=False)
    assert_one_line_error(proc, str(prompts), '"completion"')
    assert not (tmp_path / 'train.jsonl').exists()
    # and so does PPO against the ground truth
    proc = run('rlhf.py', f'--init_from={tiny_start}', f'--out_dir={tmp_path / "ppo"}', '--reward=rouge_l', *FAST,
               f'--prompt_file={prompts}', '--max_new_tokens=8', check=False)
    assert_one_line_error(proc, "reward 'rouge_l'", str(prompts), '"completion"')
    assert not (tmp_path / 'ppo').exists()


# -----------------------------------------------------------------------------
# resuming, and what a new run must not overwrite

PPO_ARGS = ['--reward=count:e', '--normalize_reward=always', *FAST, '--max_iters=10', '--batch_size=8',
            '--minibatch_size=4', '--prompt_len=4', '--max_new_tokens=8', '--save_interval=0', '--eval_samples=8']


def test_a_stopped_ppo_run_resumes_exactly(tiny_start, tmp_path):
    # the reward normalized ('always'), so its statistics come back from ckpt.pt too, not from fresh samples
    args = [f'--init_from={tiny_start}', *PPO_ARGS]
    run('rlhf.py', f'--out_dir={tmp_path / "full"}', *args)
    part = tmp_path / 'part'
    proc = subprocess.Popen([sys.executable, 'rlhf.py', f'--out_dir={part}', *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=script_env(ONE_THREAD))
    for line in proc.stdout:  # SIGTERM as PPO starts: the run stops after its first iteration or so
        if line.startswith('PPO from'):
            proc.send_signal(signal.SIGTERM)
            break
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and '--init_from=resume' in rest, rest + err
    stopped_at = torch.load(part / 'ckpt.pt', weights_only=True)['iter_num']
    assert 1 <= stopped_at < 10
    # its own command again would start over from iteration 1 and replace the policy: refused, nothing touched
    before = {f: (part / f).read_bytes() for f in ('ckpt.pt', 'log.jsonl')}
    proc = run('rlhf.py', f'--out_dir={part}', *args, check=False)
    assert_one_line_error(proc, f'{part}/ckpt.pt holds a trained model', '--init_from=resume', '--out_dir')
    assert {f: (part / f).read_bytes() for f in before} == before
    proc = run('rlhf.py', f'--out_dir={part}', *args, '--init_from=resume')
    assert f'resuming {part}/ckpt.pt (iteration {stopped_at}), started from {tiny_start}' in proc.stdout
    full, resumed = (torch.load(d / 'ckpt.pt', weights_only=True) for d in (tmp_path / 'full', part))
    for key in ('model', 'scalar_head'):
        assert full[key].keys() == resumed[key].keys()
        assert all(torch.equal(full[key][k], resumed[key][k]) for k in full[key]), key
    assert full['iter_num'] == resumed['iter_num'] == 10 and full['kl_coef'] == resumed['kl_coef']
    assert full['reward_normalization'] == resumed['reward_normalization']
    assert full['config']['init_from'] == resumed['config']['init_from'] == str(tiny_start)  # it can resume again
    drop_time = lambda log: [{k: v for k, v in r.items() if k != 'elapsed_s'} for r in log]
    assert drop_time(read_jsonl(part / 'log.jsonl')) == drop_time(read_jsonl(tmp_path / 'full' / 'log.jsonl'))


def test_a_reward_model_of_another_vocabulary_fails_before_touching_out_dir(tiny_start, tmp_path):
    # a reward model that reads 27 characters beside a policy that writes shakespeare_char's 65
    from tokenizer import Tokenizer
    letters = Tokenizer.char_from_text('abcdefghijklmnopqrstuvwxyz ')
    rm = ppo.ScalarHeadGPT(GPT(GPTConfig(**{**TINY_ARGS, 'vocab_size': 27})))
    save_checkpoint({'model': rm.gpt.state_dict(), 'model_args': {**TINY_ARGS, 'vocab_size': 27},
                     'scalar_head': rm.head.state_dict(), 'scalar_head_role': 'reward', 'tokenizer': letters.state(),
                     'iter_num': 0, 'best_val_loss': 1.0, 'config': {}}, str(tmp_path / 'rm' / 'ckpt.pt'))
    out = tmp_path / 'ppo'  # a previous run's out_dir: its log must survive a failed start
    out.mkdir()
    (out / 'log.jsonl').write_text(json.dumps({'iter': 1, 'reward': 0.5}) + '\n')
    proc = run('rlhf.py', f'--init_from={tiny_start}', f'--out_dir={out}', f'--reward={tmp_path / "rm"}', *FAST,
               '--max_iters=2', '--batch_size=8', '--minibatch_size=4', '--prompt_len=4', '--max_new_tokens=8',
               check=False)
    assert_one_line_error(proc, f'the reward model {tmp_path / "rm"} reads a 27-character vocabulary',
                          f'the policy ({tiny_start}) writes')
    assert sorted(p.name for p in out.iterdir()) == ['log.jsonl']  # no lock, no checkpoint
    assert read_jsonl(out / 'log.jsonl') == [{'iter': 1, 'reward': 0.5}]
