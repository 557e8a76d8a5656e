"""The live monitor of a stream run (``factory predict stream --monitor PORT``): its JSON while a
replay streams, the page rendered by a real headless Chromium (skipped only without a browser),
and the sink's bounded memory."""

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from models.stream.monitor import MonitorSink
from models.stream.pipeline import StreamOptions, StreamPredictor
from models.stream.sources import ReplaySource
from factory.testing import free_port
from models.testing import make_raw_store

PNG = b"\x89PNG\r\n\x1a\n"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def get(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.headers.get("Content-Type", ""), r.read()


def status(url):
    return json.loads(get(url + "status.json")[2])


def wait_for(url, predicate, timeout_s, proc):
    """The first /status.json for which predicate holds (the stream process must stay alive)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the stream ended early:\n{proc.communicate()[1]}"
        try:
            st = status(url)
            if predicate(st):
                return st
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"/status.json never satisfied the condition within {timeout_s} s")


def screenshot(browser, url, path, tmp_path):
    proc = subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", f"--screenshot={path}",
                           "--window-size=1200,900", "--virtual-time-budget=3000", "--hide-scrollbars",
                           f"--user-data-dir={tmp_path / 'chromium-profile'}", url],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and path.is_file(), proc.stderr[-2000:]


def colour_pixels(img, rgb, tol=12):
    return int((np.abs(img[..., :3] * 255 - np.asarray(rgb)).max(axis=-1) <= tol).sum())


@pytest.mark.slow  # a CLI process (torch, the model) and a browser: about 30 s on 2 shared cores
def test_monitor_page_during_a_stream_run_renders_in_headless_chromium(model_dir, tmp_path):
    import matplotlib.image as mpimg

    st = make_raw_store(tmp_path / "raw.zarr", 600)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = subprocess.Popen([sys.executable, "-m", "factory.cli", "predict", "stream", str(model_dir), "--source",
                             str(st.path), "--rate", "8", "--monitor", str(port), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = wait_for(url, lambda s: s["counts"]["predicted"] >= 6 and s["history"], 120, proc)
        c = seen["counts"]
        assert c["received"] == c["predicted"] + c["rejected"] + c["dropped"] + c["pending"]
        assert c["rejected"] == c["dropped"] == c["lost"] == 0 and c["received"] <= 600
        assert seen["labels"] == ["R", "intensity"] and seen["units"]["R"] == "a.u." and not seen["finished"]
        hist = seen["histograms"]["R"]  # sinks are written just before the counters move: a batch apart at most
        assert 6 <= hist["n"] <= c["predicted"] + 32 and sum(hist["counts"]) == hist["n"] and len(hist["edges"]) == 31
        assert 0 <= seen["latest"]["frame_id"] < c["received"] and seen["latest"]["shape"] == [33, 41]
        assert set(seen["latest"]["values"]) == {"R", "intensity"}
        last = seen["history"][-1]
        assert last["predicted"] <= c["predicted"] and last["predicted_per_s"] < 40  # replayed at 8 frames/s
        code, ctype, body = get(url + "latest.png")
        assert code == 200 and ctype == "image/png" and body[:8] == PNG
        code, ctype, page = get(url)
        assert code == 200 and ctype.startswith("text/html") and b"status.json" in page
        assert b"<script src" not in page and b"http" not in page.split(b"<script>")[1]  # nothing fetched elsewhere

        browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
        if browser is not None:
            shot = tmp_path / "monitor.png"
            screenshot(browser, url, shot, tmp_path)
            img = mpimg.imread(shot)
            assert img.shape[:2] == (900, 1200)
            assert img[..., :3].std() > 0.05  # not a blank page
            assert colour_pixels(img, (0x4C, 0x72, 0xB0)) > 500  # histogram bars drawn from /status.json
            assert colour_pixels(img, (0x2C, 0xA0, 0x2C)) > 50  # the predicted count and rate line
            assert colour_pixels(img, (0x94, 0x67, 0xBD), tol=30) > 50  # the latency p99 line
            assert colour_pixels(img, (0x44, 0x01, 0x54), tol=20) > 200  # the latest frame (viridis) was loaded
        during = status(url)["counts"]
        assert during["received"] >= c["received"]
        proc.send_signal(signal.SIGINT)  # Ctrl-C: drain, flush, exit 0
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"monitor: {url}" in err
    summary = json.loads(out)
    assert summary["received"] == summary["predicted"] >= during["received"] and summary["balanced"]
    if browser is None:
        pytest.skip(f"no browser ({', '.join(BROWSERS)}) on PATH: the page was served but not rendered")


def test_monitor_sink_is_bounded_and_matches_the_run(model_dir, tmp_path):
    st = make_raw_store(tmp_path / "raw.zarr", 40)
    mon = MonitorSink(["R", "intensity"], {"R": "a.u."}, port=0, window=16, history_s=3, log_floor=-5.0)
    assert mon.latest_png() is None
    url = mon.start()
    try:
        assert url.startswith("http://127.0.0.1:") and url != "http://127.0.0.1:0/"
        taken = MonitorSink(["R"], port=mon.port)
        with pytest.raises(ValueError, match="cannot serve"):
            taken.start()
        summary = StreamPredictor(str(model_dir), ReplaySource(st.path), [mon], StreamOptions(batch_size=8)).run()
        for _ in range(4):
            mon.sample()
        snap = status(url)
        assert snap["finished"] and snap["summary"]["predicted"] == summary["predicted"] == 40
        assert snap["counts"]["received"] == snap["counts"]["predicted"] == 40
        assert len(snap["history"]) == 3  # a ring buffer of history_s samples
        assert snap["histograms"]["R"]["n"] == 16 == len(mon.values["R"])  # the last window values only
        assert snap["latest"]["frame_id"] == 39
        code, ctype, body = get(url + "latest.png")
        assert code == 200 and ctype == "image/png" and body[:8] == PNG
        assert mon.latest_png() is mon._png[1] and mon._png[0] == 39  # rendered once per frame, then cached
    finally:
        mon.close()
    assert not mon._thread.is_alive()
