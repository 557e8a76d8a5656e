"""A live monitor of a stream run: one web page served on loopback by aiohttp (``--monitor PORT``).

:class:`MonitorSink` is a sink like the others (``write_results`` from the pipeline, ``flush`` at
the end): it keeps, in fixed-size ring buffers, the pipeline's counters sampled once a second
(received/predicted/rejected/dropped rates; latency p50/p99 of the frames predicted in that
second), the last ``window`` predicted values of each label (histograms) and a reference to the
latest predicted frame with its prediction.  Nothing is drawn per frame: ``/latest.png`` renders
the latest frame when it is asked for (once per frame id), ``/status.json`` is what the page
polls, ``/`` is the page (inline JavaScript drawing on canvases; nothing fetched from elsewhere).

The server runs on its own event loop in a daemon thread and binds 127.0.0.1 unless told
otherwise.  Writing to the sink takes one short lock and never waits for the web side.
"""

from __future__ import annotations

import asyncio
import collections
import io
import json
import threading
import time
from typing import Any, Callable

import numpy as np

HISTORY_S = 600       # seconds of rates and latency kept (one sample a second)
WINDOW = 2000         # predicted values per label kept for the histograms
BINS = 30


def frame_scale(preprocessing: dict[str, Any] | None) -> float | None:
    """The log floor (decades) to show a raw frame with when the model's input is
    log10(I / max I) of it (pmd2d, scatter on linear frames); None: show it linearly."""
    if not preprocessing or "log_floor" not in preprocessing or preprocessing.get("input") == "log10":
        return None
    return float(preprocessing["log_floor"])


class MonitorSink:
    """Rates, latency, histograms of the predictions and the latest frame, served as a web page.

    ``attach(status)`` (done by the pipeline when the run starts) gives the function that
    returns the pipeline's counters; ``url`` is where the page is once ``start()`` returned."""

    def __init__(self, labels: list[str], units: dict[str, str | None] | None = None, host: str = "127.0.0.1",
                 port: int = 0, log_floor: float | None = None, history_s: int = HISTORY_S, window: int = WINDOW,
                 title: str = "factory stream"):
        self.labels, self.units, self.log_floor, self.title = list(labels), dict(units or {}), log_floor, title
        self.host, self.port = host, int(port)
        self.lock = threading.Lock()
        self.values = {n: collections.deque(maxlen=window) for n in self.labels}
        self.history: collections.deque[dict[str, float]] = collections.deque(maxlen=history_s)
        self.recent_lat: collections.deque[float] = collections.deque(maxlen=100_000)  # since the last sample
        self.latest: tuple[int, np.ndarray, dict[str, float]] | None = None
        self._png: tuple[int, bytes] | None = None    # (frame id, PNG) of the last render
        self._status: Callable[[], dict[str, Any]] | None = None
        self._last: dict[str, Any] | None = None      # the previous sample's counters (rates)
        self.summary: dict[str, Any] | None = None
        self.t0 = time.time()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner = None

    # -- the pipeline's side ---------------------------------------------------------------
    def attach(self, status: Callable[[], dict[str, Any]]) -> None:
        """The pipeline's counters (``status()``); rates count from now (not the model's loading)."""
        st = status()
        with self.lock:
            self._status, self._last = status, {**st, "wall": time.time()}

    def write_results(self, res) -> None:
        if not len(res.frame_ids):
            return
        with self.lock:
            for n in self.labels:
                v = np.asarray(res.values[n], dtype=np.float64)
                if v.ndim == 1:
                    self.values[n].extend(v.tolist())
            self.recent_lat.extend(np.asarray(res.latency_ms, dtype=np.float64).tolist())

    def write_latest(self, frame_id: int, image: np.ndarray, values: dict[str, Any]) -> None:
        """The latest predicted frame (kept by reference; drawn only when the page asks)."""
        scalars = {n: float(v) for n, v in values.items() if np.ndim(v) == 0}
        with self.lock:
            self.latest = (int(frame_id), image, scalars)

    def flush(self, summary: dict[str, Any] | None = None) -> None:
        if summary is not None:
            self.sample()
            with self.lock:
                self.summary = {k: summary[k] for k in ("received", "predicted", "rejected", "dropped", "lost",
                                                        "balanced", "rate", "p50_ms", "p99_ms", "wall_s")
                                if k in summary}

    # -- sampling and the JSON the page reads -------------------------------------------------
    def sample(self) -> None:
        """One point of the rate/latency history (the server's loop calls this once a second)."""
        if self._status is None:
            return
        st = self._status()
        now = time.time()
        with self.lock:
            lat = np.asarray(self.recent_lat)
            self.recent_lat.clear()
            point = {"t": now - self.t0, **{k: st[k] for k in ("received", "predicted", "rejected", "dropped")}}
            prev = self._last
            dt = now - prev["wall"] if prev else now - self.t0
            for k in ("received", "predicted", "rejected", "dropped"):
                point[f"{k}_per_s"] = (st[k] - (prev[k] if prev else 0)) / dt if dt > 0 else 0.0
            point["p50_ms"] = float(np.percentile(lat, 50)) if lat.size else None
            point["p99_ms"] = float(np.percentile(lat, 99)) if lat.size else None
            self.history.append(point)
            self._last = {**st, "wall": now}

    def snapshot(self) -> dict[str, Any]:
        """What /status.json returns: counters (now), the history, histograms and the latest prediction."""
        live = self._status() if self._status is not None and self.summary is None else None
        with self.lock:
            hist = {}
            for n in self.labels:
                v = np.asarray(self.values[n])
                v = v[np.isfinite(v)]
                if v.size:
                    lo, hi = float(v.min()), float(v.max())
                    counts, edges = np.histogram(v, bins=BINS, range=(lo, hi) if hi > lo else (lo - 0.5, hi + 0.5))
                    hist[n] = {"edges": edges.tolist(), "counts": counts.tolist(), "n": int(v.size)}
                else:
                    hist[n] = {"edges": [], "counts": [], "n": 0}
            latest = None if self.latest is None else {"frame_id": self.latest[0], "values": self.latest[2],
                                                       "shape": list(np.shape(self.latest[1]))}
            last = live or self._last or {}
            return {"title": self.title, "labels": self.labels, "units": {n: self.units.get(n) for n in self.labels},
                    "uptime_s": time.time() - self.t0,
                    "counts": {k: last.get(k, 0) for k in ("received", "predicted", "rejected", "dropped", "pending",
                                                            "lost")},
                    "history": list(self.history), "histograms": hist, "latest": latest,
                    "finished": self.summary is not None, "summary": self.summary}

    def latest_png(self) -> bytes | None:
        """The latest frame as a PNG (log scale when the model's input is log), rendered once per frame."""
        with self.lock:
            latest, cached = self.latest, self._png
        if latest is None:
            return None
        if cached is not None and cached[0] == latest[0]:
            return cached[1]
        png = render_frame(latest[1], self.log_floor)
        with self.lock:
            self._png = (latest[0], png)
        return png

    # -- the web server ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> str:
        """Serve the page (binds now: a port in use is a ValueError); returns the URL."""
        ready: dict[str, Any] = {}
        started = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
                ready["ok"] = True
            except BaseException as exc:  # noqa: BLE001 (reported to start())
                ready["error"] = exc
                started.set()
                loop.close()
                return
            started.set()
            sampler = loop.create_task(self._sample_every_second())
            try:
                loop.run_forever()
            finally:
                sampler.cancel()
                loop.run_until_complete(asyncio.gather(sampler, return_exceptions=True))
                loop.run_until_complete(self._runner.cleanup())
                loop.close()

        self._thread = threading.Thread(target=serve, name="stream-monitor", daemon=True)
        self._thread.start()
        started.wait(30)
        if "error" in ready:
            err = ready["error"]
            raise ValueError(f"--monitor {self.host}:{self.port}: cannot serve ({err})") from None
        if "ok" not in ready:
            raise RuntimeError("the monitor's web server did not start within 30 s")
        return self.url

    async def _serve(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/status.json", self._status_json)
        app.router.add_get("/latest.png", self._latest_png)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        self.port = self._runner.addresses[0][1]

    async def _sample_every_second(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            await asyncio.get_running_loop().run_in_executor(None, self.sample)

    async def _page(self, request):
        from aiohttp import web

        return web.Response(text=PAGE.replace("__TITLE__", _html(self.title)), content_type="text/html")

    async def _status_json(self, request):
        from aiohttp import web

        body = await asyncio.get_running_loop().run_in_executor(None, self.snapshot)
        return web.Response(text=json.dumps(body, allow_nan=False, default=_finite), content_type="application/json",
                            headers={"Cache-Control": "no-store"})

    async def _latest_png(self, request):
        from aiohttp import web

        png = await asyncio.get_running_loop().run_in_executor(None, self.latest_png)
        if png is None:
            return web.Response(status=404, text="no frame predicted yet")
        return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "no-store"})

    def close(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


def _finite(x):
    raise TypeError(f"not JSON: {type(x).__name__}")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_frame(image: np.ndarray, log_floor: float | None) -> bytes:
    """A frame as a PNG: a 2D image as it is, more dimensions averaged over the leading axes
    (a module stack or a pulse train); log10(I / max I) clipped at ``log_floor`` when given."""
    from matplotlib.figure import Figure

    img = np.asarray(image, dtype=np.float64)
    note = ""
    if img.ndim > 2:
        note = f" (mean over the leading axes of {tuple(image.shape)})"
        img = np.nanmean(img.reshape(-1, *img.shape[-2:]), axis=0)
    elif img.ndim == 1:
        img = img[None, :]
    if log_floor is not None:
        peak = np.nanmax(img) if img.size else 0.0
        with np.errstate(divide="ignore", invalid="ignore"):
            img = np.clip(np.log10(img / peak), log_floor, 0.0) if peak > 0 else np.full_like(img, log_floor)
        label = "log10(I / max I)"
    else:
        label = "intensity"
    fig = Figure(figsize=(4.2, 3.4), dpi=90, layout="constrained")  # no pyplot: safe off the main thread
    ax = fig.add_subplot()
    im = ax.imshow(img, origin="lower", aspect="auto", cmap="viridis")
    fig.colorbar(im, ax=ax, label=label, shrink=0.9)
    ax.set_xlabel("column (pixel)", fontsize=8)
    ax.set_ylabel("row (pixel)", fontsize=8)
    ax.tick_params(labelsize=7)
    if note:
        ax.set_title(note.strip(), fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>__TITLE__ monitor</title>
<style>
body{font:13px system-ui,sans-serif;margin:12px;background:#fafafa;color:#222}
h1{font-size:16px;margin:0 0 8px}
.row{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}
.num{font-size:20px;font-weight:600}
.lbl{color:#666;font-size:11px}
#counters .card{min-width:120px}
canvas{display:block}
#pred{font-family:monospace;white-space:pre;margin-top:6px}
</style></head>
<body>
<h1>__TITLE__ <span id="state" class="lbl"></span></h1>
<div class="row" id="counters"></div>
<div class="row">
 <div class="card"><div class="lbl">frames per second</div><canvas id="rates" width="520" height="200"></canvas></div>
 <div class="card"><div class="lbl">latency per second, p50 and p99 (ms)</div><canvas id="lat" width="520" height="200"></canvas></div>
</div>
<div class="row"><div class="card"><div class="lbl">latest frame <span id="fid"></span></div>
 <img id="frame" alt="latest frame" width="378" height="306"><div id="pred"></div></div>
 <div class="row" id="hists" style="align-items:flex-start"></div></div>
<script>
"use strict";
const COLORS={received:"#1f77b4",predicted:"#2ca02c",rejected:"#d62728",dropped:"#ff7f0e",p50_ms:"#1f77b4",p99_ms:"#9467bd"};
function fmt(v){if(v===null||v===undefined)return "-";const a=Math.abs(v);return (a!==0&&(a<1e-2||a>=1e4))?v.toExponential(2):(+v.toPrecision(4)).toString();}
function unit(u){return u===null||u===undefined?"":(u===""?" (dimensionless)":" ("+u+")");}
function axes(ctx,w,h,x0,x1,y0,y1,xl){
 ctx.clearRect(0,0,w,h);ctx.strokeStyle="#999";ctx.fillStyle="#555";ctx.font="10px sans-serif";ctx.lineWidth=1;
 ctx.beginPath();ctx.moveTo(45,8);ctx.lineTo(45,h-22);ctx.lineTo(w-8,h-22);ctx.stroke();
 for(let i=0;i<=4;i++){const y=y0+(y1-y0)*i/4,py=h-22-(h-30)*i/4;ctx.fillText(fmt(y),2,py+3);}
 ctx.fillText(fmt(x0),45,h-8);ctx.fillText(fmt(x1),w-50,h-8);ctx.fillText(xl,(w/2)-30,h-8);
}
function lines(id,hist,keys){
 const c=document.getElementById(id),ctx=c.getContext("2d"),w=c.width,h=c.height;
 const t=hist.map(p=>p.t);let y1=0;
 for(const k of keys)for(const p of hist)if(p[k]!==null&&p[k]>y1)y1=p[k];
 y1=y1>0?y1*1.1:1;const x0=t.length?t[0]:0,x1=t.length>1?t[t.length-1]:x0+1;
 axes(ctx,w,h,x0,x1,0,y1,"time (s)");
 keys.forEach((k,j)=>{const col=COLORS[k.replace("_per_s","")];ctx.strokeStyle=col;ctx.lineWidth=2;ctx.beginPath();let up=false;
  for(const p of hist){if(p[k]===null){up=false;continue;}
   const px=45+(w-53)*(p.t-x0)/(x1-x0),py=h-22-(h-30)*p[k]/y1;if(up)ctx.lineTo(px,py);else ctx.moveTo(px,py);up=true;}
  ctx.stroke();ctx.fillStyle=col;ctx.fillText(k.replace("_per_s","").replace("_ms",""),w-90,14+12*j);});
}
function histogram(c,hd,name){
 const ctx=c.getContext("2d"),w=c.width,h=c.height;const n=hd.counts.length;
 const y1=Math.max(1,...hd.counts);axes(ctx,w,h,n?hd.edges[0]:0,n?hd.edges[n]:1,0,y1,name);
 ctx.fillStyle="#4c72b0";
 for(let i=0;i<n;i++){const bw=(w-53)/n,bh=(h-30)*hd.counts[i]/y1;ctx.fillRect(45+i*bw+1,h-22-bh,bw-2,bh);}
}
let lastFrame=null;
async function tick(){
 let s;try{const r=await fetch("status.json",{cache:"no-store"});s=await r.json();}catch(e){document.getElementById("state").textContent="(no connection)";return;}
 document.getElementById("state").textContent=s.finished?"(finished)":"(running, "+Math.round(s.uptime_s)+" s)";
 const last=s.history.length?s.history[s.history.length-1]:{};
 const cs=document.getElementById("counters");cs.innerHTML="";
 for(const k of ["received","predicted","rejected","dropped","pending","lost"]){
  const d=document.createElement("div");d.className="card";const rate=last[k+"_per_s"];
  d.innerHTML='<div class="lbl">'+k+'</div><div class="num" style="color:'+(COLORS[k]||"#222")+'">'+s.counts[k]+'</div>'+
   '<div class="lbl">'+(rate===undefined?"":fmt(rate)+" /s")+'</div>';cs.appendChild(d);}
 lines("rates",s.history,["received_per_s","predicted_per_s","rejected_per_s","dropped_per_s"]);
 lines("lat",s.history,["p50_ms","p99_ms"]);
 const hs=document.getElementById("hists");
 for(const n of s.labels){let c=document.getElementById("h_"+n);
  if(!c){const d=document.createElement("div");d.className="card";d.innerHTML='<div class="lbl">predicted '+n+unit(s.units[n])+
   ' <span id="hn_'+n+'"></span></div>';c=document.createElement("canvas");c.id="h_"+n;c.width=340;c.height=180;d.appendChild(c);hs.appendChild(d);}
  document.getElementById("hn_"+n).textContent="(last "+s.histograms[n].n+" frames)";
  histogram(c,s.histograms[n],n+unit(s.units[n]));}
 if(s.latest){document.getElementById("fid").textContent="(frame id "+s.latest.frame_id+", shape "+s.latest.shape.join(" x ")+")";
  document.getElementById("pred").textContent=Object.entries(s.latest.values).map(([k,v])=>k+" = "+fmt(v)+unit(s.units[k])).join("\\n");
  if(s.latest.frame_id!==lastFrame){lastFrame=s.latest.frame_id;document.getElementById("frame").src="latest.png?id="+lastFrame;}}
}
tick();setInterval(tick,1000);
</script></body></html>
"""
