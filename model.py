"""
The full GPT-2 language model in one file.

Module and parameter names follow GPT-2's own (transformer.wte, transformer.h.0.attn.c_attn, ...),
so nanoGPT checkpoints load as they are, and Hugging Face GPT-2 weights load with only the
Conv1D transpose. References:
1) OpenAI's GPT-2 release (TensorFlow): https://github.com/openai/gpt-2/blob/master/src/model.py
2) Hugging Face transformers' GPT-2: https://github.com/huggingface/transformers/blob/main/src/transformers/models/gpt2/modeling_gpt2.py

Depends on torch only; transformers and safetensors are imported when a method needs them.
"""
import inspect
import json
import math
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn import functional as F

GPT2_NAMES = {  # hub name -> architecture; every one has vocab 50257 and context 1024
    'gpt2':        dict(n_layer=12, n_head=12, n_embd=768),   # 124M params
    'gpt2-medium': dict(n_layer=24, n_head=16, n_embd=1024),  # 350M params
    'gpt2-large':  dict(n_layer=36, n_head=20, n_embd=1280),  # 774M params
    'gpt2-xl':     dict(n_layer=48, n_head=25, n_embd=1600),  # 1558M params
}
GPT2_VOCAB_SIZE = 50257
CONV1D_WEIGHTS = ('attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight')


@dataclass
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for faster matmuls
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm, like GPT-2; False is a bit better and faster

    def __post_init__(self):
        for name in ('block_size', 'vocab_size', 'n_layer', 'n_head', 'n_embd'):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}): "
                             f"each head gets n_embd // n_head channels")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


# On a CPU, the backward of torch's fused attention kernel is slow in bf16/fp16 at short context: for the
# quickstart's (12, 4, 64, 32) q/k/v, forward + backward took 3.5 ms per layer against 1.4 ms for the
# explicit softmax(q k^T) v below, and 44 ms against 30 ms at (16, 6, 256, 64). From 1024 tokens on the
# fused kernel wins (171 ms against 350 ms at (4, 12, 1024, 64)); in fp32 it wins at every length, and
# without a backward (evaluation, generation) it is as fast or faster, so those keep it.
CPU_EXPLICIT_ATTENTION_MAX_T = 512


def prefers_explicit_attention(q):
    """Whether explicit attention beats F.scaled_dot_product_attention for q of shape (B, nh, T, hs)."""
    return (q.device.type == 'cpu' and q.dtype in (torch.bfloat16, torch.float16) and q.requires_grad
            and q.size(2) <= CPU_EXPLICIT_ATTENTION_MAX_T)


def explicit_causal_attention(q, k, v, dropout_p=0.0):
    """softmax(q k^T / sqrt(hs) + causal mask) v for (B, nh, T, hs) q, k, v: what
    F.scaled_dot_product_attention(is_causal=True) computes, as separate ops."""
    T = q.size(2)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))  # (B, nh, T, T)
    future = torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1)
    att = F.softmax(att.masked_fill(future, float('-inf')), dim=-1)  # autocast runs softmax in fp32
    att = F.dropout(att, dropout_p) if dropout_p > 0 else att
    return att @ v  # (B, nh, T, hs); under autocast the matmul casts att back to v's dtype


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        # query, key and value projections for all heads in one matmul
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout

    def forward(self, x, cache=None):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        hs = C // self.n_head
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        causal = True
        if cache is not None:
            # keys/values of earlier positions come from the cache; k, v become (B, nh, pos+T, hs)
            k, v = cache.update(k, v)
            # one new query attends to every cached position; a prefill from an empty cache is causal
            causal = T > 1
            assert not (causal and k.size(2) != T), "a multi-token step must start from an empty cache"
        dropout_p = self.dropout if self.training else 0.0
        if causal and prefers_explicit_attention(q):
            y = explicit_causal_attention(q, k, v, dropout_p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble all head outputs side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate='tanh')  # GPT-2's gelu ("gelu_new" in transformers)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln_1(x), cache)
        x = x + self.mlp(self.ln_2(x))
        return x


class LayerCache:
    """Keys and values of one layer for positions [0, length): buffers (B, nh, max_len, hs)."""

    def __init__(self, max_len):
        self.max_len = max_len
        self.k = self.v = None
        self.length = 0

    def update(self, k, v):
        if self.k is None:  # allocated on first use, in the dtype autocast gives k and v
            B, nh, _, hs = k.shape
            self.k = k.new_empty(B, nh, self.max_len, hs)
            self.v = v.new_empty(B, nh, self.max_len, hs)
        end = self.length + k.size(2)
        assert end <= self.max_len, "the cache is full: the caller must rebuild it"
        self.k[:, :, self.length:end] = k
        self.v[:, :, self.length:end] = v
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying (https://paperswithcode.com/method/weight-tying): the output projection is the
        # token embedding, as in GPT-2; the state_dict still lists both keys, like nanoGPT's
        self.transformer.wte.weight = self.lm_head.weight

        self.apply(self._init_weights)
        # GPT-2 scales the init of the projections that write into the residual stream by
        # 1/sqrt(2 * n_layer): each of the 2 * n_layer residual additions then adds comparable variance
        for name, p in self.named_parameters():
            if name.endswith('c_proj.weight'):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        print(f"number of parameters: {self.get_num_params() / 1e6:.2f}M")

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_num_params(self, non_embedding=True):
        """Parameter count. With non_embedding, the position embeddings are left out; the token
        embeddings stay in because they are also the output layer (tied weights)."""
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n_params -= self.transformer.wpe.weight.numel()
        return n_params

    def hidden_states(self, idx, caches=None):
        """The final hidden states (B, T, C) of idx (B, T), after ln_f: what lm_head reads (and what a value
        or reward head reads, see ppo.py). caches: as in forward."""
        B, T = idx.size()
        start = caches[0].length if caches is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"cannot forward a sequence of length {start + T}: the model's "
                             f"block_size (context length) is {self.config.block_size}; crop the input "
                             f"to its last {self.config.block_size} tokens")
        pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)  # (T,)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for i, block in enumerate(self.transformer.h):
            x = block(x, caches[i] if caches is not None else None)
        return self.transformer.ln_f(x)

    def forward(self, idx, targets=None, all_logits=False, caches=None):
        """
        idx: (B, T) token ids; targets: (B, T) ids, -1 where the loss should not count.
        Returns (logits, loss). With targets, logits cover every position, (B, T, vocab). Without,
        only the last position is projected, (B, 1, vocab), which is all sampling needs and saves
        the largest matmul; pass all_logits=True for every position (evaluation, parity checks).
        caches: a list of LayerCache, one per layer, for incremental decoding (see generate).
        """
        x = self.hidden_states(idx, caches)  # (B, T, C)
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        else:
            logits = self.lm_head(x if all_logits else x[:, [-1], :])
            loss = None
        return logits, loss

    def crop_block_size(self, block_size):
        """Shrink the context length (e.g. load GPT-2's 1024 and train at 256)."""
        if not 0 < block_size <= self.config.block_size:
            raise ValueError(f"block_size can only shrink: asked {block_size}, model has {self.config.block_size}")
        self.config.block_size = block_size
        self.transformer.wpe.weight = nn.Parameter(self.transformer.wpe.weight[:block_size])

    # ----------------------------------------------------------------------------------------
    # Hugging Face GPT-2 interoperability

    @classmethod
    def from_pretrained(cls, name_or_dir, override_args=None):
        """
        Load GPT-2 weights: a hub name ('gpt2', 'gpt2-medium', 'gpt2-large', 'gpt2-xl'; downloaded by
        transformers, or taken from its local cache) or a local directory holding a Hugging Face GPT-2
        checkpoint (config.json + model.safetensors or pytorch_model.bin), which needs no network.
        Only dropout may be overridden.
        """
        override_args = override_args or {}
        if set(override_args) - {'dropout'}:
            raise ValueError(f"only dropout can be overridden when loading pretrained weights, "
                             f"got {sorted(override_args)}")
        if os.path.isdir(name_or_dir):
            hf_config, sd_hf = _read_hf_dir(name_or_dir)
        elif name_or_dir in GPT2_NAMES:
            hf_config, sd_hf = _download_hf(name_or_dir)
        else:
            raise ValueError(f"unknown pretrained model '{name_or_dir}': use one of "
                             f"{', '.join(GPT2_NAMES)}, or a local directory holding a Hugging Face GPT-2 "
                             f"checkpoint (config.json + model.safetensors)")
        print(f"loading weights from pretrained gpt: {name_or_dir}")
        config = GPTConfig(**_config_from_hf(hf_config, name_or_dir), **override_args)
        model = GPT(config)
        sd = model.state_dict()
        sd_hf = {k.removeprefix('transformer.'): v for k, v in sd_hf.items()
                 if not k.endswith(('.attn.bias', '.attn.masked_bias'))}  # causal-mask buffers
        for key in sd:
            hf_key = key.removeprefix('transformer.')
            if key == 'lm_head.weight':
                hf_key = 'lm_head.weight' if 'lm_head.weight' in sd_hf else 'wte.weight'  # tied
            if hf_key not in sd_hf:
                raise ValueError(f"{name_or_dir}: the checkpoint has no weight for {key}")
            w = sd_hf[hf_key]
            if key.endswith(CONV1D_WEIGHTS):
                w = w.t()  # transformers' Conv1D stores (in, out); nn.Linear wants (out, in)
            if w.shape != sd[key].shape:
                raise ValueError(f"{name_or_dir}: {key} has shape {tuple(w.shape)}, expected {tuple(sd[key].shape)}")
            with torch.no_grad():
                sd[key].copy_(w)
        return model

    def save_pretrained(self, out_dir):
        """
        Write the model as a Hugging Face GPT-2 directory (config.json + model.safetensors) that
        transformers.GPT2LMHeadModel.from_pretrained(out_dir) loads unchanged.
        A vocabulary padded to 50304 (nanoGPT's default, for speed) is cropped to GPT-2's real 50257
        rows: the padding rows are never produced by the tokenizer. Other vocabularies (e.g. a
        character-level one) are written as they are. A model trained with bias=False is written
        with zero biases, which computes the same function.
        """
        from safetensors.torch import save_file
        c = self.config
        vocab = GPT2_VOCAB_SIZE if c.vocab_size == 50304 else c.vocab_size
        sd = {}
        for key, w in self.state_dict().items():
            if key == 'lm_head.weight':
                continue  # tied to wte; transformers re-ties it on load
            w = w.detach().float()
            if key.endswith(CONV1D_WEIGHTS):
                w = w.t()
            if key == 'transformer.wte.weight':
                w = w[:vocab]
            sd[key] = w.contiguous()
        if not c.bias:  # GPT-2 always has biases: zeros reproduce a bias-free model
            for key in list(sd):
                if key.endswith('.weight') and ('ln_' in key or 'c_' in key):
                    out = sd[key].shape[-1] if key.endswith(CONV1D_WEIGHTS) else sd[key].shape[0]
                    sd[key[:-len('weight')] + 'bias'] = torch.zeros(out)
        os.makedirs(out_dir, exist_ok=True)
        save_file(sd, os.path.join(out_dir, 'model.safetensors'), metadata={'format': 'pt'})
        hf_config = dict(
            architectures=['GPT2LMHeadModel'], model_type='gpt2', vocab_size=vocab,
            n_positions=c.block_size, n_ctx=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer,
            n_head=c.n_head, n_inner=None, activation_function='gelu_new', layer_norm_epsilon=1e-5,
            resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout, initializer_range=0.02,
            scale_attn_weights=True, use_cache=True, tie_word_embeddings=True,
            bos_token_id=GPT2_VOCAB_SIZE - 1, eos_token_id=GPT2_VOCAB_SIZE - 1)
        with open(os.path.join(out_dir, 'config.json'), 'w') as f:
            json.dump(hf_config, f, indent=2)

    # ----------------------------------------------------------------------------------------
    # training helpers

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        """AdamW with weight decay on matrices and embeddings (2+ dims) only, not on biases and
        LayerNorm gains; the fused kernel where this torch has one for the device."""
        params = [p for p in self.parameters() if p.requires_grad]  # tied weights appear once
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups = [{'params': decay, 'weight_decay': weight_decay},
                  {'params': no_decay, 'weight_decay': 0.0}]
        print(f"num decayed parameter tensors: {len(decay)}, with {sum(p.numel() for p in decay):,} parameters")
        print(f"num non-decayed parameter tensors: {len(no_decay)}, with {sum(p.numel() for p in no_decay):,} parameters")
        fused = 'fused' in inspect.signature(torch.optim.AdamW).parameters and device_type in ('cuda', 'cpu')
        print(f"using fused AdamW: {fused}")
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, **({'fused': True} if fused else {}))

    def flops_per_token(self, seq_len=None):
        """Training FLOPs per token (forward + backward), PaLM appendix B: 6N for the weights
        plus 12 * L * C * T for attention scores and their weighted sums, at sequence length T."""
        c = self.config
        T = seq_len or c.block_size
        return 6 * self.get_num_params() + 12 * c.n_layer * c.n_embd * T

    def estimate_mfu(self, fwdbwd_per_iter, dt, peak_flops, seq_len=None):
        """Model FLOPs utilisation: achieved training FLOP/s over peak_flops (e.g. 989e12 for an
        H100's dense bf16, 312e12 for an A100's, or a CPU's measured matmul rate).
        fwdbwd_per_iter: sequences per iteration; dt: seconds per iteration."""
        T = seq_len or self.config.block_size
        flops_per_iter = self.flops_per_token(T) * T * fwdbwd_per_iter
        return flops_per_iter / dt / peak_flops

    # ----------------------------------------------------------------------------------------
    # sampling

    @torch.no_grad()
    def generate_stream(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, use_cache=True):
        """
        Yield new tokens one step at a time, each (B, 1), continuing the prompts idx (B, T).
        With use_cache, the prompt is processed once and each new token costs a forward pass over
        one position. GPT-2's positions are absolute: once the sequence outgrows block_size, the
        window slides and every token's position changes, so from then on each step recomputes the
        last block_size tokens, exactly as a plain full-context loop does.
        """
        block_size = self.config.block_size
        caches, fed = None, None  # fed: how many tokens of idx the caches hold
        for _ in range(max_new_tokens):
            if use_cache and idx.size(1) <= block_size:
                if caches is None:
                    caches = [LayerCache(block_size) for _ in self.transformer.h]
                    fed = 0
                logits, _ = self(idx[:, fed:], caches=caches)
                fed = idx.size(1)
            else:
                logits, _ = self(idx[:, -block_size:])
            next_id = sample_next(logits[:, -1, :], temperature, top_k, top_p)  # (B, 1)
            idx = torch.cat((idx, next_id), dim=1)
            yield next_id

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, use_cache=True):
        """Continue the prompts idx (B, T) by max_new_tokens; returns (B, T + max_new_tokens).
        temperature=0 or top_k=1 is greedy decoding. Call model.eval() first."""
        new = list(self.generate_stream(idx, max_new_tokens, temperature, top_k, top_p, use_cache))
        return torch.cat([idx] + new, dim=1)


def sample_next(logits, temperature=1.0, top_k=None, top_p=None):
    """Pick the next token from logits (B, vocab): (B, 1). temperature 0 or top_k 1 is argmax."""
    if temperature == 0 or top_k == 1:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k).values[:, [-1]]
        logits = logits.masked_fill(logits < kth, float('-inf'))
    if top_p is not None and top_p < 1.0:
        # nucleus: keep the most likely tokens whose probabilities sum to top_p (at least one)
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cum - sorted_logits.softmax(dim=-1) >= top_p  # mass before this token already >= p
        drop = drop_sorted.scatter(1, order, drop_sorted)
        logits = logits.masked_fill(drop, float('-inf'))
    # inverse-CDF sampling, one uniform number per row: torch.multinomial takes ~3 ms per call for
    # GPT-2's 50k vocabulary on a CPU, this ~0.2 ms. right=True never lands on a zero-probability token.
    cdf = F.softmax(logits, dim=-1).cumsum(dim=-1)  # (B, vocab)
    u = torch.rand(cdf.size(0), 1, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True)


# --------------------------------------------------------------------------------------------
# reading Hugging Face checkpoints


def _config_from_hf(hf, where):
    """GPTConfig fields from a transformers GPT2Config dict; refuse variants this model does not compute."""
    act = hf.get('activation_function', 'gelu_new')
    checks = [
        (act in ('gelu_new', 'gelu_pytorch_tanh'), f"activation_function {act!r} (only GPT-2's tanh gelu)"),
        (hf.get('n_inner') in (None, 4 * hf['n_embd']), f"n_inner {hf.get('n_inner')} (only 4 * n_embd)"),
        (abs(hf.get('layer_norm_epsilon', 1e-5) - 1e-5) < 1e-12, "layer_norm_epsilon other than 1e-5"),
        (hf.get('scale_attn_weights', True), "scale_attn_weights=False"),
        (not hf.get('scale_attn_by_inverse_layer_idx', False), "scale_attn_by_inverse_layer_idx"),
        (hf.get('model_type', 'gpt2') == 'gpt2', f"model_type {hf.get('model_type')!r}"),
    ]
    for ok, what in checks:
        if not ok:
            raise ValueError(f"{where}: unsupported GPT-2 variant: {what}")
    return dict(n_layer=hf['n_layer'], n_head=hf['n_head'], n_embd=hf['n_embd'],
                block_size=hf['n_positions'], vocab_size=hf['vocab_size'], bias=True)


def _read_hf_dir(path):
    config_path = os.path.join(path, 'config.json')
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{path} is not a Hugging Face GPT-2 directory: it has no config.json")
    with open(config_path) as f:
        hf_config = json.load(f)
    st_path, bin_path = os.path.join(path, 'model.safetensors'), os.path.join(path, 'pytorch_model.bin')
    if os.path.isfile(st_path):
        from safetensors.torch import load_file
        sd = load_file(st_path)
    elif os.path.isfile(bin_path):
        sd = torch.load(bin_path, map_location='cpu', weights_only=True)
    else:
        raise FileNotFoundError(f"{path} has no model.safetensors or pytorch_model.bin")
    return hf_config, sd


def _download_hf(name):
    try:
        from transformers import GPT2LMHeadModel
    except ImportError:
        raise ValueError(f"loading '{name}' from the Hugging Face hub needs transformers "
                         f"(pip install transformers), or pass a local GPT-2 directory instead")
    try:
        hf_model = GPT2LMHeadModel.from_pretrained(name)
    except OSError as e:
        raise ValueError(f"could not load '{name}' from the Hugging Face hub or its cache ({str(e).splitlines()[0]}); "
                         f"offline, pass a local Hugging Face GPT-2 directory instead "
                         f"(e.g. init_from=/path/to/{name}, made by save_pretrained on a machine that is online)")
    return hf_model.config.to_dict(), hf_model.state_dict()
