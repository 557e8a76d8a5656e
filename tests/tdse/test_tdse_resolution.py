"""The TDSE API warns when a PMD is not resolved by its grid: the mask-method yield far below the
norm the mask absorbed, or dP/dkx ending on a flat floor at the window's edge (issue 18)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from factory.tdse.api import MIN_YIELD_FRACTION, PMDResult, resolution_warnings


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_logged():
    """What the logger ``factory.tdse.api`` emits at WARNING (a handler on that logger itself, so it
    sees the records whatever the CLI's logging set-up does with them)."""
    log = logging.getLogger("factory.tdse.api")
    h, level = Records(), log.level
    log.addHandler(h)
    log.setLevel(logging.WARNING)
    yield h.messages
    log.removeHandler(h)
    log.setLevel(level)


def _result(dp_edge: float, yield_: float = 1e-4, absorbed: float = 1e-4) -> PMDResult:
    """A Gaussian PMD (down to 1e-8 of its peak at the window edge) plus a constant floor ``dp_edge`` x peak."""
    k = np.linspace(-3.0, 3.0, 121)
    p = np.exp(-(k[None] ** 2 + k[:, None] ** 2) / 0.5)
    p = p + dp_edge * p.max()
    return PMDResult(pmd=p, kx=k, ky=k, energy=-1.1, norm_left=1.0, absorbed=absorbed, total_yield=yield_,
                     params={"R": 2.0, "intensity": 3e14})


def test_resolved_pmd_gives_no_warning_and_each_symptom_is_named():
    assert resolution_warnings(_result(0.0)) == []
    assert resolution_warnings(_result(1e-9)) == []  # a floor far below anything shown
    low = resolution_warnings(_result(0.0, yield_=1e-6, absorbed=1e-4))
    assert len(low) == 1 and "0.01 of the norm the mask absorbed" in low[0]
    assert resolution_warnings(_result(0.0, yield_=2 * MIN_YIELD_FRACTION * 1e-4)) == []  # README's 3-5x gap: quiet
    floor = resolution_warnings(_result(1e-5))
    assert len(floor) == 2 and all("floor" in w for w in floor)  # both edges
    assert "kx = -3.00" in floor[0] and "kx = +3.00" in floor[1]


def test_heh_on_the_tiny_grid_warns_through_logging_and_json(warnings_logged):
    """`factory tdse pmd --molecule HeH+ --preset tiny` (R = 2, 3e14 W/cm^2): the mask removes
    5e-5 of the norm but the PMD holds 7e-9 (the tiny grid is too coarse for the He core)."""
    from typer.testing import CliRunner

    from factory.app.tdse import app

    res = CliRunner().invoke(app, ["pmd", "--molecule", "HeH+", "--preset", "tiny", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout[res.stdout.index("{"):])
    assert data["yield"] < MIN_YIELD_FRACTION * data["absorbed"]
    assert data["warnings"] and "mask absorbed" in data["warnings"][0]
    assert len(warnings_logged) == len(data["warnings"])
    assert "HeH+ R = 2 a.u." in warnings_logged[0] and "does not resolve" in warnings_logged[0]
