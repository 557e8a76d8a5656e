"""The quickstart stages of the learning half (size tiny, in-process, synthetic fallback stores)."""

from pathlib import Path

from factory.app.quickstart import Context
from factory.app.quickstart_train import stage_train_pmd, stage_train_pmd1d, stage_train_scatter


def test_stages_write_sections_with_figures(tmp_path):
    ctx = Context(out=tmp_path, size="tiny", workers=None, progress=False)
    md = stage_train_pmd(ctx) + stage_train_pmd1d(ctx) + stage_train_scatter(ctx)
    assert "## PMD CNN" in md and "## 1D CNN" in md and "## MLP" in md and "synthetic store" in md
    assert "| R |" in md and "skipped" in md  # no scattering store in this context
    figs = [l[l.index("(") + 1 : -1] for l in md.splitlines() if l.startswith("![")]
    assert len(figs) >= 9 and all((tmp_path / f).stat().st_size > 1000 for f in figs)
    assert Path(ctx.stores["synthetic-pmd"]).is_dir()
