"""scaling_laws.ipynb runs headless from a clean kernel, and its parameter count agrees with model.py."""
import re
import sys
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from model import GPT, GPTConfig  # noqa: E402


def stream_text(nb):
    return ''.join(out.get('text', '') for cell in nb.cells if cell.cell_type == 'code'
                   for out in cell.outputs if out.output_type == 'stream' and out.name == 'stdout')


def counted(text, label):
    match = re.search(rf"^{re.escape(label)} params \(counted\): (\d+)$", text, re.MULTILINE)
    assert match, f"the notebook printed no '{label} params (counted): N' line"
    return int(match.group(1))


def num_params(**config):
    with torch.device('meta'):  # same modules and shapes as on the CPU, without allocating the weights
        return GPT(GPTConfig(**config)).get_num_params()


def test_scaling_laws_notebook_executes():
    nb = nbformat.read(ROOT / 'scaling_laws.ipynb', as_version=4)
    # a failing cell raises CellExecutionError; the working directory is the repository root, as for a user
    NotebookClient(nb, timeout=180, kernel_name='python3',
                   resources={'metadata': {'path': str(ROOT)}}).execute()
    errors = [out for cell in nb.cells if cell.cell_type == 'code'
              for out in cell.outputs if out.output_type == 'error']
    assert not errors
    images = [out for cell in nb.cells if cell.cell_type == 'code'
              for out in cell.outputs if 'image/png' in out.get('data', {})]
    assert len(images) >= 3, "the plots should render inline"

    text = stream_text(nb)
    assert counted(text, 'GPTConfig() (124M, vocab 50304)') == num_params()
    assert counted(text, 'gpt2 (124M, vocab 50257)') == num_params(vocab_size=50257)
