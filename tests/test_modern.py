"""The modern recipe's switches (model.py), Muon (optim.py) and their exports (hf.py): each switch changes what the
model computes, and in the way it says; a rotary model's sliding KV cache generates what recomputing does, far
past block_size; Muon is torch.optim.Muon's update; the exported Arcee / Apertus / NanoChat models compute this
repo's logits; a combination no transformers architecture computes is refused in one line."""
import dataclasses

import pytest
import torch

from checkpoint import make_checkpoint, save_checkpoint
from configurator import UserError
from conftest import assert_one_line_error, run_script
from model import GPT, RECIPE_FIELDS, GPTConfig, LayerCache, sample_next
from optim import Muon, adjusted_lr, newton_schulz
from tokenizer import Tokenizer

TINY = dict(block_size=16, vocab_size=50, n_layer=3, n_head=2, n_embd=32, bias=False)
MODERN = dict(rotary=True, qk_norm=True, rmsnorm=True, relu_squared=True, tie_embeddings=False, logit_softcap=15.0,
              zero_init_proj=True, embedding_norm=True)
SWITCHES = {'rotary': True, 'rotary_base': 500.0, 'qk_norm': True, 'rmsnorm': True, 'relu_squared': True,
            'tie_embeddings': False, 'logit_softcap': 2.0, 'zero_init_proj': True, 'embedding_norm': True}


def model(seed=0, perturb=True, **kw):
    """A tiny GPT in eval mode; perturb moves every weight off its init (zero-initialised matrices included), so
    that a switch's effect does not hide behind a zero or a one."""
    torch.manual_seed(seed)
    m = GPT(GPTConfig(**{**TINY, **kw})).eval()
    if perturb:
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p) * 0.2)
    return m


def test_recipe_fields_are_the_switches():
    assert set(SWITCHES) == set(RECIPE_FIELDS)
    defaults = {f.name: f.default for f in dataclasses.fields(GPTConfig)}
    assert all(defaults[k] != v for k, v in SWITCHES.items())  # every value tried here is not the default


@pytest.mark.parametrize('field', sorted(SWITCHES))
def test_each_switch_changes_the_forward(field):
    """Same seed, same shared weights: flipping one switch alone must change the logits (rotary_base on a rotary
    model, where it means something)."""
    base = {'rotary': True} if field == 'rotary_base' else {}
    off, on = model(**base), model(**base, **{field: SWITCHES[field]})
    shared = {k: v for k, v in off.state_dict().items() if k in on.state_dict()}
    if field == 'tie_embeddings':  # the untied head keeps its own matrix: loading wte's into it would re-tie it
        del shared['lm_head.weight']
    if field != 'zero_init_proj':  # that one is about the initial weights: compared unperturbed below
        on.load_state_dict({**on.state_dict(), **shared})
    else:
        off, on = model(perturb=False), model(perturb=False, zero_init_proj=True)
    x = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        a, b = off(x, all_logits=True)[0], on(x, all_logits=True)[0]
    assert (a - b).abs().max().item() > 1e-3, f"{field}={SWITCHES[field]} did not change the logits"


def test_switches_do_what_they_say():
    x = torch.randint(0, 50, (2, 16))
    with torch.no_grad():
        capped = model(logit_softcap=2.0)(x, all_logits=True)[0]
        assert capped.abs().max().item() < 2.0
        # zero_init_proj: every block starts as the identity and the untied head at zero, so the first loss is
        # exactly ln(vocab): a uniform prediction
        fresh = model(perturb=False, zero_init_proj=True, tie_embeddings=False)
        assert all((b.attn.c_proj.weight == 0).all() and (b.mlp.c_proj.weight == 0).all() for b in fresh.transformer.h)
        assert torch.allclose(fresh(x, x)[1], torch.log(torch.tensor(50.0)))
    untied = model(tie_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.transformer.wte.weight.data_ptr()
    tied = model()
    assert tied.lm_head.weight.data_ptr() == tied.transformer.wte.weight.data_ptr()
    rotary = model(rotary=True, rmsnorm=True)
    assert 'transformer.wpe.weight' not in rotary.state_dict()
    assert not any('ln_' in k for k in rotary.state_dict())  # parameter-free RMSNorm
    # rotary attention sees distances only: the same tokens at positions [5, 21) give the logits they give at [0, 16)
    caches = [LayerCache(64) for _ in rotary.transformer.h]
    with torch.no_grad():
        rotary(torch.randint(0, 50, (2, 5)), caches=caches)  # occupy positions 0..4
        shifted = rotary(x, all_logits=True, caches=[PositionOnly(c) for c in caches])[0]
        assert (shifted - rotary(x, all_logits=True)[0]).abs().max().item() < 1e-5


class PositionOnly:
    """A cache that starts the forward at the wrapped cache's position but attends to nothing earlier."""

    def __init__(self, cache):
        self.length = cache.length

    def update(self, k, v):
        return k, v


def test_rotary_with_an_odd_head_size_is_one_error_line(tmp_path, shakespeare_char):
    with pytest.raises(ValueError, match='head size'):
        GPTConfig(**{**TINY, 'n_embd': 30, 'n_head': 2, 'rotary': True})  # head size 15
    proc = run_script('train.py', '--dataset=shakespeare_char', f'--out_dir={tmp_path}', '--device=cpu',
                      '--compile=False', '--n_layer=1', '--n_head=2', '--n_embd=30', '--rotary=True', check=False)
    assert_one_line_error(proc, 'head size', 'even')
    assert_one_line_error(run_script('train.py', '--optimizer=sgd', check=False), "optimizer must be 'adamw' or 'muon'")


# -----------------------------------------------------------------------------
# generation past block_size

def reference_loop(m, idx, new_tokens, reach):
    """A plain loop, no cache: each step forwards the last `reach` tokens and samples from the last position."""
    for _ in range(new_tokens):
        logits, _ = m(idx[:, -reach:])
        idx = torch.cat((idx, sample_next(logits[:, -1, :], 1.0)), dim=1)
    return idx


@pytest.mark.parametrize('n_layer', [1, 3])
def test_rotary_sliding_cache_generates_what_recomputing_does(n_layer):
    """Far past block_size (16): the sliding cache equals recomputing from the tokens the next one depends on,
    token for token, greedy and sampled (the same random draws), from a short prompt and from one longer than the
    context. With one layer those are the last block_size tokens: nanoGPT's loop."""
    m = model(n_layer=n_layer, **MODERN)
    reach = n_layer * (16 - 1) + 1
    for prompt_len in (3, 40):
        prompt = torch.randint(0, 50, (2, prompt_len))
        greedy = m.generate(prompt, 150, temperature=0)
        assert torch.equal(greedy, m.generate(prompt, 150, temperature=0, use_cache=False))
        torch.manual_seed(1)
        sampled = m.generate(prompt, 150)
        torch.manual_seed(1)
        assert torch.equal(sampled, reference_loop(m, prompt, 150, reach))
        if n_layer == 1:
            torch.manual_seed(1)
            assert torch.equal(sampled, reference_loop(m, prompt, 150, 16))


def test_sliding_cache_logits_equal_the_sliding_window_forward():
    """Token by token through the cache, every layer attending to the last 16 positions, against one forward of
    all 100 tokens with that window as its mask."""
    m = model(**MODERN)
    x = torch.randint(0, 50, (2, 100))
    caches = [LayerCache(16, sliding=True) for _ in m.transformer.h]
    with torch.no_grad():
        full = m(x, all_logits=True)[0]
        step = torch.cat([m(x[:, t:t + 1], caches=caches)[0] for t in range(100)], dim=1)
    assert (full - step).abs().max().item() < 1e-5


def test_a_gpt2_model_still_refuses_more_than_block_size():
    with pytest.raises(ValueError, match='block_size'):
        model()(torch.randint(0, 50, (1, 17)))


# -----------------------------------------------------------------------------
# Muon

def test_newton_schulz_is_torchs_in_bfloat16_and_orthogonalises_in_float32():
    from torch.optim._muon import _zeropower_via_newtonschulz
    g = torch.randn(48, 16)
    coefficients = (3.4445, -4.7750, 2.0315)
    assert torch.equal(newton_schulz(g, coefficients, 5, 1e-7, torch.bfloat16),
                       _zeropower_via_newtonschulz(g, coefficients, 5, 1e-7))
    s = torch.linalg.svdvals(newton_schulz(g, coefficients, 5, 1e-7, torch.float32))
    assert s.min() > 0.5 and s.max() < 1.5  # Muon's iteration: singular values near one, not exactly


def test_muon_step_is_torchs_update():
    """optim.Muon iterating in bfloat16 is torch.optim.Muon's own step: bitwise the same parameters and momentum
    after 3 steps; iterating in float32 it is the same update to float32's rounding."""
    from torch.optim._muon import _adjust_lr
    torch.manual_seed(0)
    w0 = torch.randn(24, 8)
    ours, ours32, theirs = (torch.nn.Parameter(w0.clone()) for _ in range(3))
    kw = dict(lr=0.05, weight_decay=0.1, momentum=0.9, nesterov=True, adjust_lr_fn='original')
    opts = [Muon([ours], ns_dtype=torch.bfloat16, **kw), Muon([ours32], **kw), torch.optim.Muon([theirs], **kw)]
    for _ in range(3):
        g = torch.randn(24, 8)
        for p in (ours, ours32, theirs):
            p.grad = g.clone()
        for opt in opts:
            opt.step()
    assert torch.equal(ours, theirs)
    assert torch.equal(opts[0].state[ours]['momentum_buffer'], opts[2].state[theirs]['momentum_buffer'])
    assert not torch.equal(ours32, theirs) and (ours32 - theirs).abs().max() < 0.01  # bf16's rounding, no more
    for fn in ('original', 'match_rms_adamw'):
        for shape in ((24, 8), (8, 24)):
            assert adjusted_lr(0.05, fn, shape) == pytest.approx(_adjust_lr(0.05, fn, torch.Size(shape)), rel=1e-12)


def test_muon_takes_the_block_matrices_and_adamw_the_rest():
    m = model(**MODERN)
    opt = m.configure_optimizers(0.1, 1e-3, (0.9, 0.99), 'cpu', 'muon', muon_lr=0.02)
    muon = {id(p) for g in opt.muon.param_groups for p in g['params']}
    adamw = {id(p) for g in opt.adamw.param_groups for p in g['params']}
    blocks = {id(p) for n, p in m.named_parameters() if n.startswith('transformer.h.') and p.dim() == 2}
    assert muon == blocks and not muon & adamw
    assert muon | adamw == {id(p) for p in m.parameters()}
    assert id(m.transformer.wte.weight) in adamw and id(m.lm_head.weight) in adamw
    assert [g['lr_ratio'] for g in opt.param_groups] == [pytest.approx(20.0), 1.0, 1.0]
    with pytest.raises(ValueError, match='not a Muon'):
        opt.load_state_dict(torch.optim.AdamW(m.parameters()).state_dict())


# -----------------------------------------------------------------------------
# export: the architecture transformers computes with no custom code, or one line

EXPORTS = {
    'ArceeForCausalLM': dict(rotary=True, rmsnorm=True),
    'ArceeForCausalLM+bias+relu2': dict(rotary=True, rmsnorm=True, bias=True, relu_squared=True),
    'ApertusForCausalLM': dict(rotary=True, rmsnorm=True, qk_norm=True, tie_embeddings=False, rotary_base=500.0),
    'NanoChatForCausalLM': MODERN,
    'NanoChatForCausalLM-softcap-tied': {**MODERN, 'logit_softcap': 0.0, 'tie_embeddings': True},
    'NanoChatForCausalLM-gelu': {**MODERN, 'relu_squared': False},
}


@pytest.mark.parametrize('name', sorted(EXPORTS))
def test_export_parity(name, tmp_path):
    transformers = pytest.importorskip('transformers')
    from hf import save_model
    m = model(**EXPORTS[name])
    save_model(m, tmp_path, eos_token_id=None)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(theirs).__name__ == name.split('-')[0].split('+')[0]
    x = torch.randint(0, 50, (2, 16))
    back = GPT.from_pretrained(str(tmp_path)).eval()  # and back: init_from=<the exported directory>
    assert dataclasses.replace(back.config, zero_init_proj=m.config.zero_init_proj) == m.config  # init only
    with torch.no_grad():
        ours = m(x, all_logits=True)[0]
        assert (ours - theirs(x).logits).abs().max().item() < 1e-4
        assert torch.equal(back(x, all_logits=True)[0], ours)


@pytest.mark.parametrize('switches, fragment', [
    (dict(rotary=True), 'rmsnorm=False'),
    (dict(rmsnorm=True, relu_squared=True), 'rotary=False'),
    (dict(rotary=True, rmsnorm=True, logit_softcap=15.0), 'softcaps'),
    (dict(rotary=True, rmsnorm=True, embedding_norm=True), 'qk_norm=False'),
    (dict(rotary=True, rmsnorm=True, qk_norm=True, bias=True), 'bias=True'),
    (dict(tie_embeddings=False), 'ties its head'),
])
def test_export_refuses_what_transformers_cannot_compute(switches, fragment):
    from hf import hf_architecture
    with pytest.raises(UserError, match=fragment):
        hf_architecture(GPTConfig(**{**TINY, **switches}))


def test_export_py_refuses_in_one_line(tmp_path):
    m = model(rotary=True, rmsnorm=True, logit_softcap=15.0)
    optimizer = m.configure_optimizers(0.1, 1e-3, (0.9, 0.99), 'cpu')
    tokenizer = Tokenizer('char', 50, meta={'vocab_size': 50, 'itos': {i: chr(65 + i) for i in range(50)},
                                           'stoi': {chr(65 + i): i for i in range(50)}})
    save_checkpoint(make_checkpoint(m, optimizer, 0, 9.9, {}, tokenizer), str(tmp_path / 'ckpt.pt'))
    proc = run_script('export.py', f'--out_dir={tmp_path}', f'--hf_dir={tmp_path / "hf"}', check=False)
    assert_one_line_error(proc, 'cannot export', 'softcap')
    assert not (tmp_path / 'hf').exists()


def muon_steps(shapes, grads):
    """Matrices of these shapes, all ones, after a Muon step on each list of gradients in grads."""
    params = [torch.nn.Parameter(torch.ones(shape)) for shape in shapes]
    opt = Muon(params, lr=0.05, weight_decay=0.1, momentum=0.9, nesterov=True, adjust_lr_fn='original')
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.clone()
        opt.step()
    return params


def _muon_steps_on_rank(rank, world_size, init_file, shapes, grads, out):
    """One gloo process of test_muon_split_over_ranks: 3 Muon steps on the same matrices and gradients."""
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    params = muon_steps(shapes, grads)
    if rank == 0:
        torch.save([p.detach() for p in params], out)
    torch.distributed.destroy_process_group()


def test_muon_split_over_ranks_is_one_process(tmp_path):
    """Under DDP each rank orthogonalizes its share of the matrices and all-gathers the rest: the same parameters
    as one process, also where a shape's matrices do not fill a run of world_size (three of one shape and one of
    another over two ranks: each shape ends in a run one rank sits out)."""
    torch.manual_seed(0)
    shapes = [(8, 4), (8, 4), (6, 10), (8, 4)]
    grads = [[torch.randn(shape) for shape in shapes] for _ in range(3)]
    torch.multiprocessing.spawn(_muon_steps_on_rank, args=(2, tmp_path / 'init', shapes, grads, tmp_path / 'ddp.pt'),
                                nprocs=2)
    params = muon_steps(shapes, grads)
    for ours, split in zip(params, torch.load(tmp_path / 'ddp.pt', weights_only=True)):
        torch.testing.assert_close(split, ours.detach(), atol=1e-5, rtol=0)
