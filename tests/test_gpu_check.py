"""gpu_check.py: its dry run on CPU (every check shrunk, the same commands), so the GPU check cannot rot between
the rare GPU sessions; and on a machine without CUDA every row of the real check is skipped, never passed."""
import json

from conftest import assert_one_line_error, run_script

# on a CPU the compile=False row repeats the first row's command, and one torchrun row stands for the four
CPU_DRY_RUN_SKIPS = {'train step, compile=False', 'torchrun ddp', 'torchrun ddp, activation ckpt', 'torchrun fsdp'}


def test_the_dry_run_runs_every_check_on_cpu(tmp_path):
    report = tmp_path / 'report.json'
    out = run_script('gpu_check.py', '--device=cpu', f'--report={report}', f'--work_dir={tmp_path / "work"}',
                     timeout=900).stdout
    rows = json.loads(report.read_text())['rows']
    assert len(rows) == 12
    for row in rows:
        if row['check'] in CPU_DRY_RUN_SKIPS:
            assert row['status'].startswith('skipped: the cpu dry run'), row
            continue
        assert row['status'] == 'ran (cpu dry run)', row  # never 'pass': the targets are a GPU's
        assert row['figure'] and row['commands'], row
        for command in row['commands']:  # the commands a user runs, as the table prints them
            assert command.split()[0] in ('python', 'torchrun'), command
            assert f"$ {command}" in out
    figures = {row['check']: row['figure'] for row in rows}
    assert 'resumed at 4: max |loss - uninterrupted| 0.00e+00' in figures['8 steps, ckpt.pt, resume']
    assert 'the same 5 greedy tokens both ways' == figures['greedy text, cached vs uncached']
    assert 'MFU' in figures['train step, micro-batch 2, compile=False']
    assert 'ckpt.pt sampled' in figures['torchrun fsdp, activation ckpt']


def test_without_cuda_every_row_is_skipped(tmp_path):
    report = tmp_path / 'report.json'
    out = run_script('gpu_check.py', f'--report={report}', f'--work_dir={tmp_path / "work"}').stdout
    rows = json.loads(report.read_text())['rows']
    assert len(rows) == 14 and all(row['status'] == 'skipped: no CUDA' for row in rows), rows
    assert 'pass' not in out


def test_a_wrong_device_is_one_line(tmp_path):
    assert_one_line_error(run_script('gpu_check.py', '--device=mps', check=False), "device must be 'cuda'")
