"""assets/plot_losses.py draws the README's figures from a real run's log.jsonl."""
from conftest import assert_one_line_error, run_script


def test_plot_losses_draws_a_png_from_a_real_log(quickstart_run, tmp_path):
    out = tmp_path / 'loss.png'
    proc = run_script('assets/plot_losses.py', f'--logs={quickstart_run / "log.jsonl"}', f'--out={out}',
                      '--target=1.8857', '--x=elapsed_s')
    assert f'wrote {out}' in proc.stdout
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and out.stat().st_size > 10_000


def test_plot_losses_bad_input(tmp_path):
    assert_one_line_error(run_script('assets/plot_losses.py', f'--logs={tmp_path}/none.jsonl', check=False),
                          'no log at')
    (tmp_path / 'log.jsonl').write_text('')
    assert_one_line_error(run_script('assets/plot_losses.py', f'--logs={tmp_path}/log.jsonl', check=False),
                          'has no evals')
