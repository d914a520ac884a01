"""model.py: GPT-2 architecture parity with transformers, the cache, init, and errors."""
import json
import math

import pytest
import torch

import model as model_module
from configurator import UserError
from model import GPT, GPTConfig, sample_next

TINY = dict(block_size=32, vocab_size=1000, n_layer=2, n_head=4, n_embd=64)


@pytest.fixture
def transformers():
    """The transformers module, for the parity and export tests; they skip without it, the rest still run."""
    return pytest.importorskip('transformers')


def tiny_hf_dir(transformers, tmp_path, seed=0, **overrides):
    """A randomly initialised transformers GPT2LMHeadModel, saved as a local HF directory."""
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=64, vocab_size=1000, n_positions=32,
                                  **overrides)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    # transformers zero-initialises biases and LayerNorm; randomise them so parity checks every tensor
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    hf.save_pretrained(tmp_path)
    return hf


def max_abs_diff(a, b):
    return (a - b).abs().max().item()


def test_module_names_match_gpt2_and_nanogpt():
    model = GPT(GPTConfig(**TINY))
    keys = set(model.state_dict())
    for k in ['transformer.wte.weight', 'transformer.wpe.weight', 'transformer.ln_f.weight', 'transformer.ln_f.bias',
              'lm_head.weight', 'transformer.h.1.ln_1.weight', 'transformer.h.1.attn.c_attn.weight',
              'transformer.h.1.attn.c_attn.bias', 'transformer.h.1.attn.c_proj.weight', 'transformer.h.1.ln_2.bias',
              'transformer.h.1.mlp.c_fc.weight', 'transformer.h.1.mlp.c_proj.bias']:
        assert k in keys, k
    assert model.lm_head.weight is model.transformer.wte.weight
    no_bias = GPT(GPTConfig(**TINY, bias=False))
    assert not any(k.endswith('.bias') for k in no_bias.state_dict())


def test_from_pretrained_local_dir_matches_transformers(transformers, tmp_path):
    hf = tiny_hf_dir(transformers, tmp_path)
    ours = GPT.from_pretrained(str(tmp_path)).eval()
    assert ours.config.gelu == 'tanh'  # GPT-2's weights come with its approximation ("gelu_new")
    idx = torch.randint(0, 1000, (3, 32))
    with torch.no_grad():
        ref = hf(idx).logits
        got, _ = ours(idx, all_logits=True)
    err = max_abs_diff(got, ref)
    print(f"HF -> ours max abs logit error: {err:.2e}")
    assert err < 1e-4
    # without all_logits only the last position is computed, and it is the same
    with torch.no_grad():
        last, _ = ours(idx)
    assert last.shape == (3, 1, 1000)
    assert max_abs_diff(last[:, 0], ref[:, -1]) < 1e-4


@pytest.mark.parametrize('gelu,activation', [('exact', 'gelu'), ('tanh', 'gelu_new')])
def test_export_round_trip_loads_in_transformers(transformers, tmp_path, gelu, activation):
    torch.manual_seed(1)
    ours = GPT(GPTConfig(**TINY, gelu=gelu)).eval()
    with torch.no_grad():  # non-zero biases and LayerNorm parameters, so every tensor matters
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    ours.save_pretrained(tmp_path / 'hf')
    assert json.loads((tmp_path / 'hf' / 'config.json').read_text())['activation_function'] == activation
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / 'hf').eval()
    idx = torch.randint(0, 1000, (2, 32))
    with torch.no_grad():
        err = max_abs_diff(ours(idx, all_logits=True)[0], hf(idx).logits)
    print(f"ours -> HF max abs logit error: {err:.2e}")
    assert err < 1e-4
    # and back again
    again = GPT.from_pretrained(str(tmp_path / 'hf')).eval()
    assert again.config.gelu == gelu
    for (k, a), b in zip(ours.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_new_model_has_nanogpts_exact_gelu():
    # nanoGPT's MLP is nn.GELU() (x * Phi(x)); GPT-2's tanh approximation differs from it by up to ~5e-4
    mlp = GPT(GPTConfig(**TINY)).transformer.h[0].mlp
    x = torch.linspace(-6, 6, 10001)
    torch.testing.assert_close(mlp.gelu(x), x * 0.5 * (1 + torch.erf(x / 2 ** 0.5)), rtol=0, atol=1e-6)
    tanh = GPT(GPTConfig(**TINY, gelu='tanh')).transformer.h[0].mlp.gelu(x)
    assert 1e-4 < (tanh - mlp.gelu(x)).abs().max() < 1e-3
    with pytest.raises(ValueError, match="gelu must be 'exact' or 'tanh'"):
        GPTConfig(**TINY, gelu='erf')


def test_export_crops_padded_vocab_and_fills_zero_biases(transformers, tmp_path):
    torch.manual_seed(2)
    ours = GPT(GPTConfig(block_size=16, vocab_size=50304, n_layer=1, n_head=2, n_embd=32, bias=False)).eval()
    ours.save_pretrained(tmp_path)
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert hf.config.vocab_size == 50257
    idx = torch.randint(0, 50257, (2, 16))
    with torch.no_grad():
        ref = hf(idx).logits
        got = ours(idx, all_logits=True)[0][..., :50257]
    assert max_abs_diff(got, ref) < 1e-4


@pytest.mark.parametrize("prompt_len,new_tokens", [(1, 20), (5, 60), (40, 10)])
def test_cached_greedy_generation_equals_full_context_loop(prompt_len, new_tokens):
    # (5, 60) runs past block_size 32; (40, 10) starts from a prompt longer than the context
    torch.manual_seed(3)
    model = GPT(GPTConfig(**TINY)).eval()
    prompt = torch.randint(0, 1000, (3, prompt_len))
    cached = model.generate(prompt, new_tokens, temperature=0)
    idx = prompt
    with torch.no_grad():
        for _ in range(new_tokens):
            logits, _ = model(idx[:, -model.config.block_size:])
            idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(cached, idx)
    assert torch.equal(model.generate(prompt, new_tokens, top_k=1), idx)
    assert torch.equal(model.generate(prompt, new_tokens, temperature=0, use_cache=False), idx)


def test_sampling_with_cache_matches_uncached_for_the_same_seed():
    torch.manual_seed(4)
    model = GPT(GPTConfig(**TINY)).eval()
    prompt = torch.randint(0, 1000, (2, 3))
    torch.manual_seed(5)
    a = model.generate(prompt, 40, temperature=0.9, top_k=50, top_p=0.9)
    torch.manual_seed(5)
    b = model.generate(prompt, 40, temperature=0.9, top_k=50, top_p=0.9, use_cache=False)
    assert torch.equal(a, b)


def test_top_k_and_top_p_restrict_the_candidates():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]]).repeat(200, 1)
    assert set(sample_next(logits, top_k=2).flatten().tolist()) <= {0, 1}
    # probabilities ~ .64 .24 .09 .03 .01: top_p 0.5 keeps only the first, 0.8 the first two
    assert set(sample_next(logits, top_p=0.5).flatten().tolist()) == {0}
    assert set(sample_next(logits, top_p=0.8).flatten().tolist()) <= {0, 1}


def test_sampling_follows_the_distribution():
    torch.manual_seed(9)
    probs = torch.tensor([0.5, 0.0, 0.3, 0.15, 0.05])
    logits = probs.log().expand(40000, 5)  # the zero-probability token has logit -inf
    counts = torch.bincount(sample_next(logits).flatten(), minlength=5).float() / 40000
    assert counts[1] == 0
    assert (counts - probs).abs().max() < 0.01, counts  # ~4 standard errors at n=40000
    # temperature flattens: at T=2 the probabilities are proportional to sqrt(p)
    flat = probs.sqrt() / probs.sqrt().sum()
    counts = torch.bincount(sample_next(logits, temperature=2.0).flatten(), minlength=5).float() / 40000
    assert (counts - flat).abs().max() < 0.01, counts


def test_loss_at_init_is_ln_vocab():
    torch.manual_seed(6)
    for vocab in (65, 1000):
        model = GPT(GPTConfig(**{**TINY, 'vocab_size': vocab}))
        idx = torch.randint(0, vocab, (8, 32))
        targets = torch.randint(0, vocab, (8, 32))
        _, loss = model(idx, targets)
        assert abs(loss.item() - math.log(vocab)) < 0.1, (loss.item(), math.log(vocab))


def test_init_scales_residual_projections():
    torch.manual_seed(7)
    config = GPTConfig(block_size=64, vocab_size=512, n_layer=8, n_head=4, n_embd=256)
    model = GPT(config)
    std_proj = model.transformer.h[3].mlp.c_proj.weight.std().item()
    std_fc = model.transformer.h[3].mlp.c_fc.weight.std().item()
    assert abs(std_fc - 0.02) < 0.001
    assert abs(std_proj - 0.02 / math.sqrt(2 * 8)) < 0.0005
    assert torch.count_nonzero(model.transformer.h[0].attn.c_attn.bias) == 0


def test_explicit_attention_equals_fused_kernel():
    """The explicit path (taken on CPU in bf16/fp16 up to 512 tokens) computes what SDPA computes."""
    torch.manual_seed(11)
    q, k, v = [torch.randn(3, 4, 50, 16, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    explicit = model_module.explicit_causal_attention(q, k, v)
    assert max_abs_diff(fused, explicit) < 1e-12
    grads_fused = torch.autograd.grad(fused.square().sum(), (q, k, v))
    grads_explicit = torch.autograd.grad(explicit.square().sum(), (q, k, v))
    for a, b in zip(grads_fused, grads_explicit):
        assert max_abs_diff(a, b) < 1e-12


def test_bf16_training_step_is_the_same_through_either_attention_path(monkeypatch):
    torch.manual_seed(12)
    model = GPT(GPTConfig(**TINY))
    idx, targets = torch.randint(0, 1000, (4, 32)), torch.randint(0, 1000, (4, 32))

    def loss_and_grads():
        model.zero_grad()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            _, loss = model(idx, targets)
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()])

    q = torch.zeros(1, 4, 32, 16, dtype=torch.bfloat16, requires_grad=True)
    assert model_module.prefers_explicit_attention(q)
    assert not model_module.prefers_explicit_attention(q.float())
    assert not model_module.prefers_explicit_attention(q.detach())
    loss_explicit, grads_explicit = loss_and_grads()
    monkeypatch.setattr(model_module, 'CPU_EXPLICIT_ATTENTION_MAX_T', 0)  # every length takes SDPA
    assert not model_module.prefers_explicit_attention(q)
    loss_fused, grads_fused = loss_and_grads()
    assert abs(loss_explicit - loss_fused) < 5e-3, (loss_explicit, loss_fused)
    cos = torch.nn.functional.cosine_similarity(grads_explicit, grads_fused, dim=0).item()
    assert cos > 0.999, cos


def test_targets_of_minus_one_are_ignored():
    torch.manual_seed(8)
    model = GPT(GPTConfig(**TINY))
    idx = torch.randint(0, 1000, (2, 16))
    targets = torch.randint(0, 1000, (2, 16))
    masked = targets.clone()
    masked[:, :8] = -1
    full, _ = model(idx, all_logits=True)
    expected = torch.nn.functional.cross_entropy(full[:, 8:].reshape(-1, 1000), targets[:, 8:].reshape(-1))
    logits, loss = model(idx, masked, masked_targets=True)  # data with answer masks
    assert logits.shape == (16, 1000)  # only the positions whose targets count go through lm_head
    torch.testing.assert_close(logits, full[:, 8:].reshape(-1, 1000))
    torch.testing.assert_close(loss, expected)
    logits, loss = model(idx, masked)  # the same loss without the compaction
    assert logits.shape == (2, 16, 1000)
    torch.testing.assert_close(loss, expected)


LARGE_VOCAB = dict(TINY, vocab_size=3000)  # past CHUNKED_LOSS_MIN_VOCAB: the loss is taken in chunks


def loss_and_grads(model, idx, targets, masked_targets=False):
    model.zero_grad(set_to_none=True)
    logits, loss = model(idx, targets, masked_targets=masked_targets)
    loss.backward()
    return logits, loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize('recipe', [{}, dict(logit_softcap=15.0, tie_embeddings=False)], ids=['gpt2', 'softcap'])
@pytest.mark.parametrize('masked_targets', [False, True])
def test_the_chunked_loss_equals_the_plain_one_in_float32(monkeypatch, recipe, masked_targets):
    """Over a large vocabulary the loss goes chunk by chunk and never holds every position's logits: the same loss
    and the same gradient of every parameter as F.cross_entropy over all the logits, within float32's rounding,
    with ignored (-1) targets in and across chunks, and a last chunk shorter than the others."""
    assert LARGE_VOCAB['vocab_size'] >= model_module.CHUNKED_LOSS_MIN_VOCAB
    torch.manual_seed(3)
    model = GPT(GPTConfig(**LARGE_VOCAB, **recipe))
    idx, targets = torch.randint(0, 3000, (3, 32)), torch.randint(0, 3000, (3, 32))
    targets[0, :20] = -1
    targets[2, 5] = -1
    monkeypatch.setattr(model_module, 'CHUNKED_LOSS_MAX_ROWS', 7)  # 7 rows, raised to n_embd / 2 = 32: 3 chunks
    # of the 96 or 75 positions, the last one shorter for 75
    logits, chunked, chunked_grads = loss_and_grads(model, idx, targets, masked_targets)
    assert logits is None  # no logits were made for the whole batch
    with torch.no_grad():  # evaluation: the same loss, without the gradients
        torch.testing.assert_close(model(idx, targets, masked_targets=masked_targets)[1], chunked)
    monkeypatch.setattr(model_module, 'CHUNKED_LOSS_MIN_VOCAB', 10**9)  # the plain path
    logits, plain, plain_grads = loss_and_grads(model, idx, targets, masked_targets)
    assert logits.size(-1) == 3000
    full, _ = model(idx, all_logits=True)  # and by hand: the mean over the 75 counted targets
    kept = targets != -1
    by_hand = -torch.log_softmax(full[kept], dim=-1).gather(1, targets[kept][:, None]).mean()
    torch.testing.assert_close(chunked, by_hand, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(chunked, plain, rtol=1e-6, atol=1e-6)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)


def test_training_steps_through_the_chunked_loss_follow_the_plain_ones(monkeypatch):
    """loop.train_step, train.py's step, 4 AdamW steps from the same weights and batches: the losses of the chunked
    loss and the plain one agree within float32's rounding at every step."""
    from contextlib import nullcontext

    import loop
    curves = []
    for min_vocab in (model_module.CHUNKED_LOSS_MIN_VOCAB, 10**9):
        monkeypatch.setattr(model_module, 'CHUNKED_LOSS_MIN_VOCAB', min_vocab)
        torch.manual_seed(4)
        model = GPT(GPTConfig(**LARGE_VOCAB))
        opt = model.configure_optimizers(0.1, 1e-2, (0.9, 0.99), 'cpu')
        gen = torch.Generator().manual_seed(5)
        batches = iter([(torch.randint(0, 3000, (4, 32), generator=gen), torch.randint(0, 3000, (4, 32), generator=gen))
                        for _ in range(4)])
        scaler = torch.amp.GradScaler('cpu', enabled=False)
        curves.append([loop.train_step(model, opt, batches, scaler=scaler, micro_steps=1, ctx=nullcontext(),
                                       grad_clip=1.0, lr=1e-2).item() for _ in range(4)])
    chunked, plain = curves
    assert chunked[-1] < chunked[0]  # it trains
    assert chunked == pytest.approx(plain, rel=1e-5, abs=1e-5)


class HostSyncs(torch.utils._python_dispatch.TorchDispatchMode):
    """Counts the ops that make the host wait for a tensor's values (on CUDA, for the GPU): .item(), bool(),
    .all() read as a bool, boolean-mask indexing (nonzero sizes the output)."""
    SYNCING = {'_local_scalar_dense', 'nonzero', 'masked_select', 'nonzero_static'}

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        bool_index = name in ('index', 'index_put', 'index_put_') and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)
        if name in self.SYNCING or bool_index:
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize('recipe', [{}, dict(rotary=True, qk_norm=True, rmsnorm=True, relu_squared=True,
                                             tie_embeddings=False, logit_softcap=15.0, embedding_norm=True),
                                    dict(vocab_size=LARGE_VOCAB['vocab_size'])],
                         ids=['gpt2', 'modern', 'chunked_loss'])
def test_the_training_forward_and_backward_never_wait_for_values(recipe):
    """The forward + loss + backward of a training step reads no tensor's value on the host, so on a GPU eager
    steps never stall the queue; only masked_targets=True (answer-masked data) compacts the positions, a sync."""
    model = GPT(GPTConfig(**{**TINY, **recipe}))
    idx, targets = torch.randint(0, 1000, (2, 16)), torch.randint(0, 1000, (2, 16))
    with HostSyncs() as syncs:
        _, loss = model(idx, targets)
        loss.backward()
    assert syncs.seen == []
    with HostSyncs() as syncs:
        model(idx, targets, masked_targets=True)
    assert syncs.seen  # the counter sees the one sync the masked path does


def test_crop_block_size_and_num_params():
    model = GPT(GPTConfig(**TINY))
    full = model.get_num_params(non_embedding=False)
    assert full - model.get_num_params() == 32 * 64
    model.crop_block_size(16)
    assert model.transformer.wpe.weight.shape == (16, 64)
    with pytest.raises(ValueError, match="length 17.*block_size.*16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_configure_optimizers_decays_only_matrices():
    model = GPT(GPTConfig(**TINY))
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), 'cpu')
    decay, no_decay = opt.param_groups
    assert decay['weight_decay'] == 0.1 and no_decay['weight_decay'] == 0.0
    assert all(p.dim() >= 2 for p in decay['params']) and all(p.dim() < 2 for p in no_decay['params'])
    n_opt = sum(p.numel() for g in opt.param_groups for p in g['params'])
    assert n_opt == model.get_num_params(non_embedding=False)  # the tied matrix counted once


# TINY's parameters counted by hand from the architecture, position embeddings left out (get_num_params'
# non_embedding count): C = 64, vocab 1000, 2 layers, with biases
TINY_N = (1000 * 64                      # wte, tied with lm_head: counted once
          + 2 * (2 * 64                  # ln_1 weight and bias
                 + 64 * 3 * 64 + 3 * 64  # attn.c_attn
                 + 64 * 64 + 64          # attn.c_proj
                 + 2 * 64                # ln_2
                 + 64 * 4 * 64 + 4 * 64  # mlp.c_fc
                 + 4 * 64 * 64 + 64)     # mlp.c_proj
          + 2 * 64)                      # ln_f


def test_flops_per_token_and_mfu_against_a_hand_count():
    model = GPT(GPTConfig(**TINY))
    assert model.get_num_params() == TINY_N
    # PaLM appendix B: 6N for the weights, 12 * L * C * T for attention, per token at sequence length T
    assert model.flops_per_token() == 6 * TINY_N + 12 * 2 * 64 * 32  # T defaults to block_size
    assert model.flops_per_token(16) == 6 * TINY_N + 12 * 2 * 64 * 16
    # 4 sequences of 32 tokens in 0.5 s against a 1 GFLOP/s peak; then 4 of 16 tokens in 1 s
    assert model.estimate_mfu(4, 0.5, 1e9) == pytest.approx((6 * TINY_N + 12 * 2 * 64 * 32) * 32 * 4 / 0.5 / 1e9)
    assert model.estimate_mfu(4, 1.0, 1e9, seq_len=16) == pytest.approx((6 * TINY_N + 12 * 2 * 64 * 16) * 16 * 4 / 1e9)


def test_flops_of_answer_masked_data_count_lm_head_at_the_counted_targets_only(tmp_path):
    """With masked_targets only the targets that count go through lm_head: MFU's FLOP count takes lm_head's 6 * C *
    vocab per token at that share of the positions (dataloader.answer_share: the answers whose prompt is whole in a
    window, over 256 windows)."""
    import numpy as np

    import dataloader
    from configurator import UserError
    np.tile(np.array([0, 0, 0, 1], dtype=np.uint8), 256).tofile(tmp_path / 'train_mask.bin')
    # a window of 8 targets holds 2 answers; the first counts when its prompt starts in the window: 1.5 on average
    assert dataloader.answer_share(str(tmp_path), 8) == pytest.approx(1.5 / 8, abs=0.02)
    assert dataloader.answer_share(str(tmp_path / 'no-mask'), 8) == 1.0
    with pytest.raises(UserError, match='no answer .* fits in a window of block_size 2'):
        dataloader.answer_share(str(tmp_path), 2)  # a prompt of 3 never fits
    share = 0.25
    model = GPT(GPTConfig(**TINY))
    body = 6 * (TINY_N - 1000 * 64) + 12 * 2 * 64 * 32  # the blocks, ln_f and attention, at every position
    head = 6 * 64 * 1000  # lm_head (tied to wte), at a quarter of them
    assert model.flops_per_token(head_share=share) == body + head / 4
    assert model.flops_per_token() == body + head
    assert model.estimate_mfu(4, 0.5, 1e9, head_share=share) == pytest.approx((body + head / 4) * 32 * 4 / 0.5 / 1e9)


def test_bad_configs_and_names_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"n_embd \(100\) must be divisible by n_head \(3\)"):
        GPTConfig(n_embd=100, n_head=3)
    with pytest.raises(UserError, match="gpt2, gpt2-medium, gpt2-large, gpt2-xl.*local directory"):
        GPT.from_pretrained('gpt3')
    with pytest.raises(UserError, match="only dropout"):
        GPT.from_pretrained('gpt2', dict(n_layer=3))
    with pytest.raises(UserError, match="config.json"):
        GPT.from_pretrained(str(tmp_path))


def test_unsupported_gpt2_variant_is_a_clear_error(transformers, tmp_path):
    tiny_hf_dir(transformers, tmp_path, activation_function='relu')
    with pytest.raises(UserError, match="activation_function"):
        GPT.from_pretrained(str(tmp_path))


@pytest.mark.parametrize('rotary', [False, True], ids=['gpt2', 'rotary'])
def test_buffers_are_constants_so_ddp_need_not_broadcast_them(rotary):
    """train.py wraps DDP with broadcast_buffers=False: every buffer of the model (the rotary tables) is a constant
    that training steps never change, built alike on every rank."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY, rotary=rotary, dropout=0.1))
    before = {name: b.clone() for name, b in model.named_buffers()}
    assert bool(before) == rotary
    opt = model.configure_optimizers(0.1, 1e-2, (0.9, 0.95), 'cpu')
    for _ in range(2):
        _, loss = model(torch.randint(0, 1000, (2, 16)), torch.randint(0, 1000, (2, 16)))
        loss.backward()
        opt.step()
    for name, b in model.named_buffers():
        assert torch.equal(b, before[name]), name
    torch.manual_seed(1)  # another rank's seed would not change them either
    assert all(torch.equal(b, before[n]) for n, b in GPT(GPTConfig(**TINY, rotary=rotary)).named_buffers())


MODERN_RECIPE = dict(rotary=True, qk_norm=True, rmsnorm=True, relu_squared=True, tie_embeddings=False,
                     logit_softcap=15.0, zero_init_proj=True, embedding_norm=True)  # config/*_modern.py's switches


@pytest.mark.parametrize('recipe', [{}, MODERN_RECIPE], ids=['gpt2', 'modern'])
@pytest.mark.parametrize('shape', ['tiny_checkpointed', '124M_meta'])
def test_the_compiled_training_forward_has_no_graph_breaks(recipe, shape):
    """torch.compile traces the training forward + loss as one graph (torch._dynamo.explain: a break would cut it in
    two and run the gap eagerly): at a tiny shape with activation checkpointing, and at GPT-2 124M's shape on the
    meta device (no memory, no compute)."""
    import torch._dynamo
    torch._dynamo.reset()
    if shape == '124M_meta':
        with torch.device('meta'):
            model = GPT(GPTConfig(block_size=1024, vocab_size=50304, n_layer=12, n_head=12, n_embd=768, **recipe))
            idx, targets = torch.zeros(1, 1024, dtype=torch.long), torch.zeros(1, 1024, dtype=torch.long)
    else:
        model = GPT(GPTConfig(**TINY, **recipe))
        model.activation_checkpointing = True
        idx, targets = torch.randint(0, 1000, (2, 32)), torch.randint(0, 1000, (2, 32))
    explained = torch._dynamo.explain(model)(idx, targets)
    assert explained.graph_break_count == 0, [str(reason.reason) for reason in explained.break_reasons]
    assert explained.graph_count == 1
