"""
Hugging Face GPT-2 directories, both ways: reading one into a GPT (GPT.from_pretrained, init_from=<dir>) and
writing a GPT and its tokenizer out as one (GPT.save_pretrained, export.py), so that transformers' Auto*
classes, pipelines, lm-evaluation-harness and other tools load it with no custom code.

A directory holds config.json + model.safetensors (transformers' GPT2LMHeadModel: Conv1D weights stored
(in, out), where nn.Linear keeps (out, in)), generation_config.json, and the tokenizer files:
- GPT-2 BPE: vocab.json (GPT-2's encoder.json), merges.txt (derived here from the BPE ranks) and tokenizer.json;
- a character vocabulary: a tokenizer.json whose WordLevel model maps each character to its meta.pkl id,
  with no normalizer and a pre-tokenizer that isolates every character, so AutoTokenizer encodes and decodes
  exactly as tokenizer.py does (a character it lacks included), plus a BOS token for lm-evaluation-harness;
- a BPE trained on the dataset (data/text/prepare.py --tokenizer=bpe): its own tokenizer.json, with GPT-2's
  post-processor and '<|endoftext|>' as the special end-of-text token.

A model of the modern recipe (model.py's switches) is written as the transformers architecture that computes the
same function, where one exists (hf_architecture): every one of them has rotary positions and RMSNorm and an MLP
without a gate, like this repo's. Llama, Qwen3 and their kin gate their MLP (SwiGLU), which GPT-2's MLP and the
ReLU^2 one are not, so no switch set here is Llama- or Qwen3-shaped; Arcee is Llama with an ungated MLP, Apertus
adds QK-norm to it, NanoChat is nanochat's model (QK-norm, a normalised embedding, optional logit softcap).
"""
import json
import os

import torch
from tqdm import tqdm

from configurator import UserError
from files import follow_umask
from model import GPT, GPT2_NAMES, GPT2_VOCAB_SIZE, GPTConfig

CHAR_BOS = '<|startoftext|>'  # a character export's BOS token (save_tokenizer)
CONV1D_WEIGHTS = ('attn.c_attn.weight', 'attn.c_proj.weight', 'mlp.c_fc.weight', 'mlp.c_proj.weight')
# transformers' activation names -> GPTConfig.gelu (an export writes gelu_new or gelu for GPT-2, gelu_pytorch_tanh or
# gelu for the rotary architectures)
HF_GELU = {'gelu_new': 'tanh', 'gelu_pytorch_tanh': 'tanh', 'gelu': 'exact'}


# -----------------------------------------------------------------------------
# reading

def config_from_hf(hf, where):
    """GPTConfig fields from a transformers GPT2Config dict; refuse variants this model does not compute."""
    missing = [k for k in ('n_layer', 'n_head', 'n_embd', 'n_positions', 'vocab_size') if k not in hf]
    if missing:
        raise UserError(f"{where}: config.json lacks {', '.join(missing)}: it is not a GPT-2 config")
    act = hf.get('activation_function', 'gelu_new')
    checks = [
        (act in HF_GELU, f"activation_function {act!r} (only gelu and GPT-2's tanh approximation of it)"),
        (hf.get('n_inner') in (None, 4 * hf['n_embd']), f"n_inner {hf.get('n_inner')} (only 4 * n_embd)"),
        (abs(hf.get('layer_norm_epsilon', 1e-5) - 1e-5) < 1e-12, "layer_norm_epsilon other than 1e-5"),
        (hf.get('scale_attn_weights', True), "scale_attn_weights=False"),
        (not hf.get('scale_attn_by_inverse_layer_idx', False), "scale_attn_by_inverse_layer_idx"),
        (hf.get('model_type', 'gpt2') == 'gpt2', f"model_type {hf.get('model_type')!r}"),
    ]
    for ok, what in checks:
        if not ok:
            raise UserError(f"{where}: unsupported GPT-2 variant: {what}")
    return dict(n_layer=hf['n_layer'], n_head=hf['n_head'], n_embd=hf['n_embd'],
                block_size=hf['n_positions'], vocab_size=hf['vocab_size'], bias=True, gelu=HF_GELU[act])


def read_hf_dir(path):
    """(config dict, state dict) of a local Hugging Face GPT-2 directory."""
    config_path = os.path.join(path, 'config.json')
    if not os.path.isfile(config_path):
        raise UserError(f"{path} is not a Hugging Face GPT-2 directory: it has no config.json")
    try:
        with open(config_path, encoding='utf-8') as f:
            hf_config = json.load(f)
    except ValueError as e:  # not JSON, or not UTF-8
        raise UserError(f"{config_path} is not a JSON config ({e}): the directory is damaged; export or "
                        f"download it again") from None
    if not isinstance(hf_config, dict):
        raise UserError(f"{config_path} is not a config: it holds no JSON object; export or download the directory "
                        f"again")
    st_path, bin_path = os.path.join(path, 'model.safetensors'), os.path.join(path, 'pytorch_model.bin')
    if os.path.isfile(st_path):
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            sd = load_file(st_path)
        except SafetensorError as e:
            raise UserError(f"cannot read {st_path} ({e}): the file is corrupt or truncated; export or download "
                            f"the directory again") from None
    elif os.path.isfile(bin_path):
        from checkpoint import load_weights  # here, not above: checkpoint.py imports this module
        sd = load_weights(bin_path, 'weights file')
    else:
        raise UserError(f"{path} has no model.safetensors or pytorch_model.bin")
    return hf_config, sd


def download_hf(name):
    """(config dict, state dict) of a GPT-2 hub model, through transformers (its cache, or a download)."""
    try:
        from transformers import GPT2LMHeadModel
    except ImportError:
        raise UserError(f"loading '{name}' from the Hugging Face hub needs transformers "
                        f"(pip install transformers), or pass a local GPT-2 directory instead")
    try:
        hf_model = GPT2LMHeadModel.from_pretrained(name)
    except OSError as e:
        raise UserError(f"could not load '{name}' from the Hugging Face hub or its cache ({str(e).splitlines()[0]}); "
                        f"offline, pass a local Hugging Face GPT-2 directory instead "
                        f"(e.g. init_from=/path/to/{name}, made by save_pretrained on a machine that is online)")
    return hf_model.config.to_dict(), hf_model.state_dict()


def load_gpt2(name_or_dir, override_args=None):
    """A GPT with the weights of a GPT-2 hub name or a local Hugging Face GPT-2 directory (GPT.from_pretrained)."""
    override_args = override_args or {}
    if set(override_args) - {'dropout'}:
        raise UserError(f"only dropout can be overridden when loading pretrained weights, "
                        f"got {sorted(override_args)}")
    if os.path.isdir(name_or_dir):
        hf_config, sd_hf = read_hf_dir(name_or_dir)
    elif name_or_dir in GPT2_NAMES:
        hf_config, sd_hf = download_hf(name_or_dir)
    else:
        raise UserError(f"unknown pretrained model '{name_or_dir}': use one of "
                        f"{', '.join(GPT2_NAMES)}, or a local directory holding a Hugging Face GPT-2 "
                        f"checkpoint (config.json + model.safetensors)")
    print(f"loading weights from pretrained gpt: {name_or_dir}")
    if hf_config.get('model_type') in HF_CLASSES:  # a modern-recipe model export.py wrote
        return load_rotary_model(hf_config, sd_hf, name_or_dir, override_args)
    model = GPT(GPTConfig(**config_from_hf(hf_config, name_or_dir), **override_args))
    sd = model.state_dict()
    sd_hf = {k.removeprefix('transformer.'): v for k, v in sd_hf.items()
             if not k.endswith(('.attn.bias', '.attn.masked_bias'))}  # causal-mask buffers
    for key in sd:
        hf_key = key.removeprefix('transformer.')
        if key == 'lm_head.weight':
            hf_key = 'lm_head.weight' if 'lm_head.weight' in sd_hf else 'wte.weight'  # tied
        if hf_key not in sd_hf:
            raise UserError(f"{name_or_dir}: the checkpoint has no weight for {key}")
        w = sd_hf[hf_key]
        if key.endswith(CONV1D_WEIGHTS):
            w = w.t()  # transformers' Conv1D stores (in, out); nn.Linear wants (out, in)
        if w.shape != sd[key].shape:
            raise UserError(f"{name_or_dir}: {key} has shape {tuple(w.shape)}, expected {tuple(sd[key].shape)}")
        with torch.no_grad():
            sd[key].copy_(w)
    return model


# -----------------------------------------------------------------------------
# writing

def hf_architecture(config):
    """The transformers architecture that computes what a GPTConfig does, with no custom code: 'gpt2', 'arcee',
    'apertus' or 'nanochat'. A switch set none of them computes is a UserError naming what does not fit."""
    c = config
    if not (c.rotary or c.rmsnorm or c.qk_norm or c.relu_squared or c.embedding_norm or c.logit_softcap):
        if not c.tie_embeddings:
            raise UserError("cannot export: transformers' GPT-2 ties its head to the token embedding, and this "
                            "model's head is its own (tie_embeddings=False)")
        return 'gpt2'
    if not (c.rotary and c.rmsnorm):
        raise UserError("cannot export: a model with some of the modern switches is exported as Arcee, Apertus or "
                        "NanoChat, which all have rotary=True and rmsnorm=True; this one has rotary="
                        f"{c.rotary}, rmsnorm={c.rmsnorm}")
    if c.embedding_norm:
        if not (c.qk_norm and not c.bias):
            raise UserError("cannot export: with embedding_norm=True the architecture is NanoChat, which also has "
                            f"qk_norm=True and no biases; this model has qk_norm={c.qk_norm}, bias={c.bias}")
        return 'nanochat'
    if c.logit_softcap:
        raise UserError("cannot export: of the architectures with an ungated MLP only NanoChat softcaps its logits, "
                        "and NanoChat normalises its embeddings (embedding_norm=True), which this model does not")
    if c.qk_norm:
        if c.bias:
            raise UserError("cannot export: with qk_norm=True the architecture is Apertus, whose MLP has no biases; "
                            "this model has bias=True")
        return 'apertus'
    return 'arcee'


def save_model(model, out_dir, eos_token_id=GPT2_VOCAB_SIZE - 1, vocab_size=None):
    """
    Write config.json + model.safetensors that transformers' AutoModelForCausalLM.from_pretrained(out_dir) loads:
    GPT2LMHeadModel for GPT-2's recipe, else the architecture hf_architecture names (save_rotary_model).
    A vocabulary padded for speed is cropped to the tokenizer's vocab_size rows (by default: 50304, nanoGPT's,
    to GPT-2's real 50257): the padding rows are never produced by the tokenizer. A model trained with
    bias=False gets zero biases, which compute the same function.
    eos_token_id: the end-of-text id (GPT-2's 50256), or None for a vocabulary without one.
    """
    c = model.config
    vocab = vocab_size or (GPT2_VOCAB_SIZE if c.vocab_size == 50304 else c.vocab_size)
    architecture = hf_architecture(c)
    if architecture != 'gpt2':
        return save_rotary_model(model, out_dir, architecture, vocab, eos_token_id)
    sd = {}
    for key, w in tqdm(model.state_dict().items(), desc='converting', unit='tensor', disable=None):  # terminals only
        if key == 'lm_head.weight':
            continue  # tied to wte; transformers re-ties it on load
        w = w.detach().float().cpu()
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
    _save_safetensors(sd, out_dir)
    hf_config = dict(
        architectures=['GPT2LMHeadModel'], model_type='gpt2', vocab_size=vocab,
        n_positions=c.block_size, n_ctx=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer,
        n_head=c.n_head, n_inner=None, activation_function='gelu_new' if c.gelu == 'tanh' else 'gelu',
        layer_norm_epsilon=1e-5,
        resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout, initializer_range=0.02,
        scale_attn_weights=True, use_cache=True, tie_word_embeddings=True,
        bos_token_id=eos_token_id, eos_token_id=eos_token_id)
    _write_json(os.path.join(out_dir, 'config.json'), hf_config)
    _write_generation_config(out_dir, c.block_size, eos_token_id)


HF_CLASSES = {'arcee': ('ArceeForCausalLM', 'input_layernorm', 'post_attention_layernorm'),
              'apertus': ('ApertusForCausalLM', 'attention_layernorm', 'feedforward_layernorm'),
              'nanochat': ('NanoChatForCausalLM', None, None)}  # NanoChat's norms have no weights


def halves_swapped(w, n_head):
    """w (n_head * hs, ...), rows grouped by head, with the two halves of every head's rows exchanged (its own
    inverse): NanoChat's rotary layout from this repo's and back."""
    return w.view(n_head, 2, w.size(0) // n_head // 2, *w.shape[1:]).flip(1).reshape(w.shape)


def save_rotary_model(model, out_dir, architecture, vocab, eos_token_id):
    """A modern-recipe model as Arcee, Apertus or NanoChat (see hf_architecture): c_attn split into q, k and v, the
    parameter-free norms as gains of one where the architecture has gains. NanoChat turns each rotary pair the
    other way (its rotate_half is (x2, -x1)); turning the two halves of every head's q and k rows around makes its
    rotation this repo's, and q k^T (and the parameter-free QK-norm) do not see the order of a head's channels."""
    c = model.config
    hs = c.n_embd // c.n_head
    class_name, norm_1, norm_2 = HF_CLASSES[architecture]
    mlp_in, mlp_out = ('fc1', 'fc2') if architecture == 'nanochat' else ('up_proj', 'down_proj')
    src = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    ones = lambda n: torch.ones(n)

    sd = {'model.embed_tokens.weight': src['transformer.wte.weight'][:vocab]}
    if not c.tie_embeddings:
        sd['lm_head.weight'] = src['lm_head.weight'][:vocab]
    if norm_1 is not None:
        sd['model.norm.weight'] = ones(c.n_embd)
    for i in range(c.n_layer):
        ours, theirs = f'transformer.h.{i}.', f'model.layers.{i}.'
        for kind in ('weight', 'bias') if c.bias else ('weight',):
            q, k, v = src[ours + f'attn.c_attn.{kind}'].split(c.n_embd, dim=0)
            if architecture == 'nanochat':
                q, k = halves_swapped(q, c.n_head), halves_swapped(k, c.n_head)
            sd.update({theirs + f'self_attn.q_proj.{kind}': q, theirs + f'self_attn.k_proj.{kind}': k,
                       theirs + f'self_attn.v_proj.{kind}': v,
                       theirs + f'self_attn.o_proj.{kind}': src[ours + f'attn.c_proj.{kind}'],
                       theirs + f'mlp.{mlp_in}.{kind}': src[ours + f'mlp.c_fc.{kind}'],
                       theirs + f'mlp.{mlp_out}.{kind}': src[ours + f'mlp.c_proj.{kind}']})
        if norm_1 is not None:
            sd.update({theirs + f'{norm_1}.weight': ones(c.n_embd), theirs + f'{norm_2}.weight': ones(c.n_embd)})
        if architecture == 'apertus':
            sd.update({theirs + 'self_attn.q_norm.weight': ones(hs), theirs + 'self_attn.k_norm.weight': ones(hs)})
    _save_safetensors({k: w.contiguous() for k, w in tqdm(sd.items(), desc='converting', unit='tensor',
                                                           disable=None)}, out_dir)  # copies
    from model import RMSNorm
    hf_config = dict(
        architectures=[class_name], model_type=architecture, vocab_size=vocab, hidden_size=c.n_embd,
        intermediate_size=4 * c.n_embd, num_hidden_layers=c.n_layer, num_attention_heads=c.n_head,
        num_key_value_heads=c.n_head, head_dim=hs, max_position_embeddings=c.block_size,
        hidden_act='relu2' if c.relu_squared else 'gelu_pytorch_tanh' if c.gelu == 'tanh' else 'gelu',
        rms_norm_eps=RMSNorm.eps,
        rope_parameters={'rope_type': 'default', 'rope_theta': c.rotary_base}, attention_bias=c.bias,
        attention_dropout=0.0, initializer_range=0.02, use_cache=True, tie_word_embeddings=c.tie_embeddings,
        bos_token_id=eos_token_id, eos_token_id=eos_token_id, pad_token_id=None)
    if architecture == 'arcee':
        hf_config['mlp_bias'] = c.bias
    if architecture == 'nanochat':
        hf_config['final_logit_softcapping'] = c.logit_softcap or None
    _write_json(os.path.join(out_dir, 'config.json'), hf_config)
    _write_generation_config(out_dir, c.block_size, eos_token_id)


def load_rotary_model(hf, sd, where, override_args):
    """The GPT an Arcee, Apertus or NanoChat directory holds, when it is one this repo's switches compute (as
    save_rotary_model writes them): the inverse of save_rotary_model, refusing what GPTConfig cannot express."""
    architecture, n_embd, n_head = hf['model_type'], hf['hidden_size'], hf['num_attention_heads']
    hs = n_embd // n_head
    mlp_in, mlp_out = ('fc1', 'fc2') if architecture == 'nanochat' else ('up_proj', 'down_proj')
    rope = hf.get('rope_parameters') or {}
    checks = [
        (hf.get('num_key_value_heads', n_head) == n_head, "grouped keys and values (num_key_value_heads)"),
        (hf.get('head_dim') in (None, hs), f"head_dim {hf.get('head_dim')} (only hidden_size / heads)"),
        (hf['intermediate_size'] == 4 * n_embd, f"intermediate_size {hf['intermediate_size']} (only 4 * hidden_size)"),
        (hf.get('hidden_act') in ('relu2', *HF_GELU), f"hidden_act {hf.get('hidden_act')!r}"),
        (rope.get('rope_type', 'default') == 'default', f"rope_type {rope.get('rope_type')!r}"),
        (abs(hf.get('rms_norm_eps', 1e-6) - 1e-6) < 1e-12, "an rms_norm_eps other than 1e-6"),
        (all((w == 1).all() for k, w in sd.items() if k.endswith('norm.weight')), "RMSNorm gains other than one"),
        (hf.get('attention_bias', False) == hf.get('mlp_bias', hf.get('attention_bias', False)),
         "biases in attention but not the MLP, or the other way"),
    ]
    for ok, what in checks:
        if not ok:
            raise UserError(f"{where}: this {architecture} model has {what}, which this repo's model does not "
                            f"compute; it reads back the {architecture} directories export.py writes")
    bias = bool(hf.get('attention_bias', False))
    config = GPTConfig(n_layer=hf['num_hidden_layers'], n_head=n_head, n_embd=n_embd, vocab_size=hf['vocab_size'],
                       block_size=hf['max_position_embeddings'], bias=bias, rotary=True,
                       rotary_base=float(rope.get('rope_theta', 10000.0)), rmsnorm=True,
                       qk_norm=architecture in ('apertus', 'nanochat'), relu_squared=hf['hidden_act'] == 'relu2',
                       gelu=HF_GELU.get(hf['hidden_act'], 'exact'),
                       tie_embeddings=bool(hf.get('tie_word_embeddings', False)),
                       logit_softcap=float(hf.get('final_logit_softcapping') or 0.0),
                       embedding_norm=architecture == 'nanochat', **override_args)
    model = GPT(config)

    ours = {'transformer.wte.weight': sd['model.embed_tokens.weight']}
    if not config.tie_embeddings:
        ours['lm_head.weight'] = sd['lm_head.weight']
    for i in range(config.n_layer):
        a, b = f'transformer.h.{i}.', f'model.layers.{i}.'
        for kind in ('weight', 'bias') if bias else ('weight',):
            q, k = sd[b + f'self_attn.q_proj.{kind}'], sd[b + f'self_attn.k_proj.{kind}']
            if architecture == 'nanochat':
                q, k = halves_swapped(q, n_head), halves_swapped(k, n_head)
            ours.update({a + f'attn.c_attn.{kind}': torch.cat([q, k, sd[b + f'self_attn.v_proj.{kind}']]),
                         a + f'attn.c_proj.{kind}': sd[b + f'self_attn.o_proj.{kind}'],
                         a + f'mlp.c_fc.{kind}': sd[b + f'mlp.{mlp_in}.{kind}'],
                         a + f'mlp.c_proj.{kind}': sd[b + f'mlp.{mlp_out}.{kind}']})
    if config.tie_embeddings:
        ours['lm_head.weight'] = ours['transformer.wte.weight']
    model.load_state_dict(ours)
    return model


def _save_safetensors(sd, out_dir):
    """out_dir/model.safetensors, with the permissions of the umask (safetensors writes its file private, 0600)."""
    from safetensors.torch import save_file
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, 'model.safetensors')
    save_file(sd, path, metadata={'format': 'pt'})
    follow_umask(path)


def _write_generation_config(out_dir, block_size, eos_token_id):
    generation = dict(max_length=block_size, do_sample=False)
    if eos_token_id is not None:
        generation.update(bos_token_id=eos_token_id, eos_token_id=eos_token_id)
    _write_json(os.path.join(out_dir, 'generation_config.json'), generation)


def _write_json(path, obj):
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write('\n')


def gpt2_merges(mergeable_ranks):
    """GPT-2's BPE merges, in rank order, from tiktoken's {token bytes: rank}: the token of rank r is the
    merge of the two parts that BPE with only the merges below r leaves of it (transformers'
    convert_slow_tokenizer derives merges the same way)."""
    merges = []
    for token, rank in sorted(mergeable_ranks.items(), key=lambda kv: kv[1]):
        if len(token) == 1:
            continue  # the 256 single bytes are the alphabet, not merges
        parts = [token[i:i + 1] for i in range(len(token))]
        while True:  # byte-pair encode token, lowest-ranked pair first, merges of rank < `rank` only
            pair_ranks = [(mergeable_ranks.get(a + b, rank), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            best, i = min(pair_ranks)
            if best >= rank:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        assert len(parts) == 2, f"token {token!r} of rank {rank} is not one merge of lower-ranked tokens"
        merges.append((parts[0], parts[1]))
    return merges


def save_tokenizer(tokenizer, out_dir, model_max_length):
    """The tokenizer files for a tokenizer.Tokenizer, so that AutoTokenizer.from_pretrained(out_dir) encodes
    and decodes exactly as it does."""
    from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
    from tokenizers import Tokenizer as RustTokenizer
    from transformers import PreTrainedTokenizerFast

    from tokenizer import EOT_TEXT, GPT2_ENCODER_JSON, _gpt2_byte_decoder
    if tokenizer.name == 'bpe':  # its own tokenizer.json: vocabulary, merges, GPT-2's split pattern and bytes
        rust = RustTokenizer.from_str(tokenizer.json)
    elif tokenizer.name == 'gpt2':
        byte_to_char = {b: c for c, b in _gpt2_byte_decoder().items()}
        as_text = lambda token: ''.join(byte_to_char[b] for b in token)
        merges = [(as_text(a), as_text(b)) for a, b in gpt2_merges(tokenizer.encoding._mergeable_ranks)]
        with open(GPT2_ENCODER_JSON, encoding='utf-8') as f:
            vocab = json.load(f)  # GPT-2's vocab.json: ids are the ranks, <|endoftext|> last
        _write_json(os.path.join(out_dir, 'vocab.json'), vocab)  # vocab.json + merges.txt: GPT-2's own files,
        with open(os.path.join(out_dir, 'merges.txt'), 'w', encoding='utf-8') as f:  # for tools that want them
            f.write('#version: 0.2\n')
            f.writelines(f"{a} {b}\n" for a, b in merges)
        rust = RustTokenizer(models.BPE(vocab, merges))
        rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's split pattern, then bytes
        rust.decoder = decoders.ByteLevel()
    if tokenizer.name in ('gpt2', 'bpe'):  # GPT-2's conventions: <|endoftext|> is bos, eos and unk
        rust.post_processor = processors.ByteLevel(trim_offsets=False)
        eot = AddedToken(EOT_TEXT, special=True, normalized=False)
        rust.add_special_tokens([eot])  # a trained BPE has it already (id 0): it stays where it is
        fast = PreTrainedTokenizerFast(tokenizer_object=rust, model_max_length=model_max_length, bos_token=eot,
                                       eos_token=eot, unk_token=eot, clean_up_tokenization_spaces=False)
    else:
        itos = tokenizer.meta['itos']
        # a character the vocabulary lacks is read as tokenizer.py reads it (unknown_char); it is the WordLevel
        # model's own fallback, not transformers' unk_token, which would make it special (skipped in decoding)
        rust = RustTokenizer(models.WordLevel({itos[i]: i for i in range(tokenizer.vocab_size)},
                                              unk_token=tokenizer.unknown_char))
        rust.pre_tokenizer = pre_tokenizers.Split(Regex(r'[\s\S]'), behavior='isolated')  # every character alone
        rust.decoder = decoders.Fuse()  # ids back to characters, joined with nothing between them
        # lm-evaluation-harness needs a BOS or EOS token (its prefix for an empty context). Every id is a character
        # the model reads and writes, and transformers drops a special token's text when it decodes (pipelines do),
        # so the BOS is one more token, after the model's ids: never produced by encoding ordinary text nor by
        # the model. Note the model cannot read it: lm-eval requests with an empty context (perplexity) fail.
        bos = AddedToken(CHAR_BOS, special=True, normalized=False)
        fast = PreTrainedTokenizerFast(tokenizer_object=rust, model_max_length=model_max_length, bos_token=bos,
                                       clean_up_tokenization_spaces=False)
    fast.save_pretrained(out_dir)


def load_tokenizer(path):
    """The tokenizer.Tokenizer of a Hugging Face directory: its char vocabulary if tokenizer.json is a
    WordLevel model (as save_tokenizer writes one), GPT-2 BPE if it holds GPT-2's vocabulary, another
    byte-level BPE with GPT-2's split pattern as a trained BPE, None if it has no tokenizer files (weights saved
    without them, as GPT2LMHeadModel.save_pretrained does)."""
    from tokenizer import GPT2_ENCODER_JSON, Tokenizer
    tokenizer_json, vocab_json = os.path.join(path, 'tokenizer.json'), os.path.join(path, 'vocab.json')
    vocab, full = None, None
    if os.path.isfile(tokenizer_json):
        with open(tokenizer_json, encoding='utf-8') as f:
            text = f.read()
        full = json.loads(text)
        spec = full['model']
        if spec.get('type') == 'WordLevel':
            itos = {i: c for c, i in spec['vocab'].items()}
            if sorted(itos) != list(range(len(itos))) or any(len(c) != 1 for c in spec['vocab']):
                raise UserError(f"{tokenizer_json} is a word-level vocabulary, not one character per id: this "
                                f"repo reads GPT-2 BPE and character vocabularies")
            meta = {'vocab_size': len(itos), 'itos': itos, 'stoi': dict(spec['vocab'])}
            return Tokenizer('char', len(itos), meta=meta)
        vocab = spec.get('vocab') if spec.get('type') == 'BPE' else None
    elif os.path.isfile(vocab_json):
        with open(vocab_json, encoding='utf-8') as f:
            vocab = json.load(f)
    else:
        return None
    with open(GPT2_ENCODER_JSON, encoding='utf-8') as f:
        gpt2_vocab = json.load(f)
    if vocab is not None and {k: v for k, v in vocab.items() if k in gpt2_vocab} == gpt2_vocab:
        return Tokenizer.gpt2()
    split = (full or {}).get('pre_tokenizer') or {}
    if (vocab is not None and full is not None and full.get('normalizer') is None and split.get('type') == 'ByteLevel'
            and split.get('use_regex', True) and not split.get('add_prefix_space')):
        return Tokenizer.bpe(text, where=tokenizer_json)  # as tokenizer.py encodes, split and bytes alike
    raise UserError(f"{path} holds a tokenizer that is neither GPT-2's BPE, a byte-level BPE with GPT-2's split "
                    f"pattern nor a character vocabulary: this repo's tokenizer.py reads only those")
