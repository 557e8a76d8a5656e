"""`factory quickstart` runs the whole chain (tiny presets here) and writes a report with figures."""

import re

import pytest

from factory.testing import error_line, run_cli, run_cli_process


@pytest.mark.slow  # the whole chain at tiny size, in its own process
def test_quickstart_tiny_writes_report_with_figures(tmp_path):
    out = tmp_path / "qs"
    proc = run_cli_process("quickstart", "--out", str(out), "--size", "tiny", "--no-progress", timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (out / "report.md").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert figures, report
    for name in figures:
        png = out / name
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert "## Stage timings" in report
    # the measured-pattern stage: network and refined correlation for both icosahedra, honestly labelled
    measured = report[report.index("### The measured patterns"):]
    assert re.search(r"\| barke5 \| -?\d+.*\| -?\d\.\d\d \| \d+ \| -?\d\.\d\d \|", measured), measured[:1500]
    assert "barke6" in measured and "can and cannot do" in measured


def test_quickstart_refuses_unknown_size(tmp_path):
    proc = run_cli("quickstart", "--out", str(tmp_path), "--size", "huge")
    assert proc.returncode == 2 and "quickstart size 'huge'" in error_line(proc)
