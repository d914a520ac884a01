"""
HellaSwag's validation set (Zellers et al. 2019; 10,042 examples) as the repo's multiple-choice jsonl, which
eval_tasks.py and train.py --eval_hellaswag score:

    python data/hellaswag/prepare.py                          # downloads hellaswag_val.jsonl from the official repo
    python data/hellaswag/prepare.py --input=hellaswag_val.jsonl   # offline: a local copy of that file

Each official line {"ctx", "endings": [4], "label", ...} becomes {"context": ctx, "endings": [" " + ending, ...],
"label": label}: an ending continues the context after a space, as build-nanogpt and llm.c score it. The text is
kept, not token ids: a model is scored with its own tokenizer. The GPT-2 token counts are printed as a check that
every example fits GPT-2's context of 1024.
"""
import json
import os
import sys
import urllib.request

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repo root, as data/__init__.py says
from tqdm import tqdm

from configurator import UserError, configure
from data.common import atomic_outputs, read_jsonl
from tokenizer import Tokenizer

input = ''  # a local hellaswag_val.jsonl; '' = out_dir/hellaswag_val.jsonl, downloaded first if it is missing
out_dir = _HERE  # where val.jsonl goes
configure(globals())

URL = 'https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl'
source = input or os.path.join(out_dir, 'hellaswag_val.jsonl')
if not input and not os.path.exists(source):
    print(f"downloading {URL}")
    try:
        with urllib.request.urlopen(URL, timeout=30) as response:
            data = response.read()
    except OSError as e:  # no network, a refused connection, a timeout
        raise UserError(f"cannot download {URL} ({e}); offline, pass --input=<a local copy of "
                        f"hellaswag_val.jsonl>") from None
    with atomic_outputs(out_dir, ['hellaswag_val.jsonl']) as files:
        files['hellaswag_val.jsonl'].write(data)
elif input and not os.path.isfile(input):
    raise UserError(f"--input={input}: no such file; give a local copy of HellaSwag's hellaswag_val.jsonl")

examples = []
for n, record in read_jsonl(source, {'ctx': str, 'endings': list, 'label': int}):
    if not all(isinstance(e, str) for e in record['endings']) or not 0 <= record['label'] < len(record['endings']):
        raise UserError(f"{source}:{n}: endings must be strings and label the index of one of them")
    examples.append({'context': record['ctx'], 'endings': [' ' + e for e in record['endings']],
                     'label': record['label']})
if not examples:
    raise UserError(f"{source} holds no examples")

enc = Tokenizer.gpt2()
longest = max(len(enc.encode(x['context'])) + max(len(enc.encode(e)) for e in x['endings'])
              for x in tqdm(examples, desc='counting tokens', unit='example', disable=None))  # terminals only
with atomic_outputs(out_dir, ['val.jsonl']) as files:
    for x in examples:
        files['val.jsonl'].write((json.dumps(x) + '\n').encode('utf-8'))
print(f"wrote {len(examples):,} examples to {os.path.join(out_dir, 'val.jsonl')} (the longest context + ending is "
      f"{longest} GPT-2 tokens)")
