() => {
  // The page's own script (run once at load). Events call into window.uavm by name
  // (layout.js("...")); everything here only draws, stamps or relays: no answers are made here.
  const uavm = window.uavm = window.uavm || {};
  const NARROW = 640;  // px: below it, long figure titles break at their " · "

  // Enter in a number box commits it, as leaving the box does (Gradio's release on blur)
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    if (e.key === 'Enter' && t && t.matches && t.matches('input[type=number], .uavm-level input')) { t.blur(); }
  }, true);
  // a slider moved with the keyboard commits like one moved with the mouse (Gradio's
  // slider commits on pointerup, which the keys never send)
  const KEYS = ['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'PageUp', 'PageDown', 'Home', 'End'];
  document.addEventListener('keyup', (e) => {
    const t = e.target;
    if (KEYS.includes(e.key) && t && t.matches && t.matches('input[type=range]')) {
      t.dispatchEvent(new PointerEvent('pointerup', {bubbles: true}));
    }
  }, true);

  // Each analysis request is numbered as it is sent: requests may reach the server out of
  // order, and the server answers only a session's newest (serving.InOrder). The stamp box
  // holds a sentinel; its place among the inputs gets the number.
  uavm.stamp = (...args) => {
    uavm.sent = (uavm.sent || 0) + 1;
    return args.map((a) => (a === 'uavm-stamp' ? String(uavm.sent) : a));
  };
  // the number of the newest request checked (its answer is for the settings the page shows,
  // or it was skipped as overtaken): the page has settled when it is the newest one sent.
  // An answer that painted is followed by its check (layout: answered -> reconcile), which
  // is stamped before anything counts, so the page is never settled in between.
  uavm.answered = (n) => {
    const v = Number(n);
    if (Number.isFinite(v)) { uavm.done = Math.max(uavm.done || 0, v); }
    return [];
  };
  uavm.settled = () => (uavm.sent || 0) > 0 && (uavm.done || 0) >= uavm.sent;

  // a new clip: the results come into view (on a phone they sit below the inputs)
  uavm.showResults = (v) => {
    const el = document.querySelector('#status');
    if (v && el && el.getBoundingClientRect().top > window.innerHeight * 0.6) {
      el.scrollIntoView({behavior: 'smooth', block: 'start'});
    }
    return v;
  };

  // Long titles and labels break at " · " on a narrow page (plotly does not wrap text)
  const fit = (fig, div) => {
    const width = (div && div.clientWidth) || window.innerWidth;  // 0 while its box is still hidden
    if (!div || width >= NARROW) return fig;
    const lines = (t) => (typeof t === 'string' ? t.split(' · ').join('<br>') : t);
    let extra = 0;
    for (const a of (fig.layout.annotations || [])) {
      const n = (a.text || '').split(' · ').length;
      a.text = lines(a.text);
      extra = Math.max(extra, n - 1);
    }
    const title = fig.layout.title;
    if (title) {
      if (typeof title === 'string') { fig.layout.title = {text: lines(title)}; }
      else if (title.text) { extra = Math.max(extra, title.text.split(' · ').length - 1); title.text = lines(title.text); }
      if (fig.layout.title.font) { fig.layout.title.font.size = 13; } else { fig.layout.title.font = {size: 13}; }
    }
    fig.layout.margin = Object.assign({}, fig.layout.margin || {});
    fig.layout.margin.t = (fig.layout.margin.t || 40) + 16 * extra;
    fig.layout.height = (fig.layout.height || 300) + 16 * extra;
    fig.layout.margin.l = Math.min(fig.layout.margin.l || 60, 80);
    return fig;
  };

  const draw = (id, json, after) => {
    const div = document.getElementById(id);
    if (!div || !window.Plotly) return null;
    if (!json) { window.Plotly.purge(div); div.innerHTML = ''; return null; }
    const fig = fit(JSON.parse(json), div);
    if (after) after(fig);
    window.Plotly.react(div, fig.data, fig.layout, {responsive: true, displaylogo: false});
    return div;
  };

  // The attention figure arrives as plotly JSON and is drawn with Plotly.react into the same
  // div: a toggle changes the heatmap's numbers and rows, and react updates only those.
  uavm.drawTemporal = (json) => { draw('temporal-plot', json); return []; };

  // The timeline strip: drawn like the heatmaps; the window the explorer shows is outlined,
  // and a click on a window is passed to the server through a hidden text box.
  const outline = () => (uavm.window ? [{type: 'rect', name: 'current', xref: 'x', yref: 'paper',
    x0: uavm.window[0], x1: uavm.window[0] + uavm.window[1], y0: 0, y1: 1,
    line: {color: '#000000', width: 3}, fillcolor: 'rgba(0,0,0,0)', layer: 'above'}] : []);
  uavm.drawTimeline = (json) => {
    const div = draw('timeline-div', json, (fig) => { fig.layout.shapes = outline(); });
    if (div && !div.__uavm) {
      div.__uavm = true;
      div.on('plotly_click', (ev) => {
        const p = ev && ev.points && ev.points[0];
        if (!p || p.customdata === undefined) return;
        const start = Array.isArray(p.customdata) ? p.customdata[0] : p.customdata;
        const box = document.querySelector('#timeline-pick textarea, #timeline-pick input');
        if (!box) return;
        box.value = String(start) + ' ' + Date.now();  // a new value even for the same window again
        box.dispatchEvent(new Event('input', {bubbles: true}));
      });
    }
    return [];
  };
  // the window of the answers on the page: "START SECONDS" ('' when there are none)
  uavm.markWindow = (value) => {
    const parts = String(value || '').trim().split(/\s+/).map(Number);
    uavm.window = parts.length === 2 && parts.every(Number.isFinite) ? parts : null;
    const div = document.getElementById('timeline-div');
    if (div && div.data && window.Plotly) { window.Plotly.relayout(div, {shapes: outline()}); }
    return [];
  };

  // -- the Live tab: the camera's frames at the model's rate and the microphone's sound, sent
  // about once a second through a hidden box (layout: live_push). The next push waits for the
  // last one's answer (live_ack), so a slow server skips refreshes instead of queueing them.
  const live = uavm.live = {running: false, seq: 0, inflight: null, lags: [], answers: 0};
  const b64 = (bytes) => {
    let s = '';
    for (let i = 0; i < bytes.length; i += 0x8000) { s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000)); }
    return btoa(s);
  };
  const now = () => (performance.now() - live.t0) / 1000;  // seconds since Start: the times sent
  const send = () => {
    if (!live.running) return;
    if (live.inflight && performance.now() - live.inflight.at < 10000) return;  // still answering: skip
    const box = document.querySelector('#live-push textarea, #live-push input');
    if (!box) return;
    const frames = live.frames.splice(0);
    let audio = null;
    if (live.pcm.length) {
      const n = live.pcm.reduce((k, c) => k + c.length, 0);
      const keep = Math.min(n, live.rate * 6);  // a long stall: the newest 6 s only (the rest is a gap)
      const out = new Int16Array(keep);
      let j = keep;
      for (let i = live.pcm.length - 1; i >= 0 && j > 0; i--) {
        const c = live.pcm[i];
        const take = Math.min(c.length, j);
        out.set(c.subarray(c.length - take), j - take);
        j -= take;
      }
      audio = {t: live.pcmEnd - keep / live.rate, rate: live.rate, pcm: b64(new Uint8Array(out.buffer))};
      live.pcm = [];
    }
    if (!frames.length && !audio && !Object.keys(live.errors).length) return;
    const newest = Math.max(live.pcmEnd || 0, ...frames.map((f) => f.t));
    live.seq += 1;
    live.inflight = {seq: live.seq, at: performance.now(), newest};
    box.value = JSON.stringify({seq: live.seq, frames, audio, errors: live.errors});
    box.dispatchEvent(new Event('input', {bubbles: true}));
  };
  uavm.liveAck = (n) => {
    const v = Number(n);
    if (live.inflight && v === live.inflight.seq) {
      live.lags.push(now() - live.inflight.newest);  // the newest sample answered, against the clock
      if (live.lags.length > 120) live.lags.shift();
      live.answers += 1;
      live.inflight = null;
      const el = document.getElementById('live-lag');
      if (el) {
        const sorted = live.lags.slice().sort((a, b) => a - b);
        const rate = live.answers / Math.max(now(), 1e-3);
        el.textContent = `${live.answers} answers, ${rate.toFixed(2)} a second; lag ${sorted[sorted.length >> 1].toFixed(2)} s (median)`;
      }
    }
    return [];
  };
  uavm.liveStart = async () => {
    if (live.running) return [];
    const box = document.getElementById('live-box');
    live.rate = Number(box.dataset.rate); live.fps = Number(box.dataset.fps); live.side = Number(box.dataset.side);
    Object.assign(live, {running: true, t0: performance.now(), frames: [], pcm: [], pcmEnd: 0, errors: {},
                         lags: [], answers: 0, inflight: null, streams: []});
    const media = navigator.mediaDevices;
    const open = async (what, kind) => {
      try { const s = await media.getUserMedia(what); live.streams.push(s); return s; }
      catch (e) { live.errors[kind] = (e && e.name) || 'refused'; return null; }
    };
    const cam = media ? await open({video: {width: {ideal: 640}, height: {ideal: 480}}}, 'video') : null;
    const mic = media ? await open({audio: {channelCount: 1, echoCancellation: false, noiseSuppression: false,
                                            autoGainControl: false}}, 'audio') : null;
    if (!media) { live.errors = {audio: 'no media devices on this page', video: 'no media devices on this page'}; }
    if (cam) {
      const v = document.getElementById('live-preview');
      v.srcObject = cam;
      await v.play().catch(() => {});
      const canvas = document.createElement('canvas');
      live.grab = setInterval(() => {
        if (!v.videoWidth) return;
        const s = live.side / Math.min(v.videoWidth, v.videoHeight);
        canvas.width = Math.round(v.videoWidth * s); canvas.height = Math.round(v.videoHeight * s);
        canvas.getContext('2d').drawImage(v, 0, 0, canvas.width, canvas.height);
        live.frames.push({t: now(), jpeg: canvas.toDataURL('image/jpeg', 0.85).split(',')[1]});
        if (live.frames.length > 6) live.frames.shift();  // (a push stays well under the event cap)
      }, 1000 / live.fps);
    }
    if (mic) {
      const ctx = live.ctx = new AudioContext({sampleRate: live.rate});
      const src = ctx.createMediaStreamSource(mic);
      const proc = live.proc = ctx.createScriptProcessor(4096, 1, 1);
      proc.onaudioprocess = (e) => {
        const x = e.inputBuffer.getChannelData(0);
        const q = new Int16Array(x.length);
        for (let i = 0; i < x.length; i++) q[i] = Math.max(-32768, Math.min(32767, Math.round(x[i] * 32767)));
        if (!live.pcmEnd) live.pcmEnd = now() - x.length / live.rate;
        live.pcm.push(q);
        live.pcmEnd += x.length / live.rate;
      };
      src.connect(proc); proc.connect(ctx.destination);  // (its output is silence: it copies nothing)
    }
    live.timer = setInterval(send, 900);  // a push about once a second (an answer takes ~0.1 s to come back)
    return [];
  };
  uavm.liveStop = (...args) => {
    live.running = false;
    clearInterval(live.timer); clearInterval(live.grab);
    for (const s of live.streams || []) for (const t of s.getTracks()) t.stop();
    if (live.proc) live.proc.disconnect();
    if (live.ctx) live.ctx.close().catch(() => {});
    live.ctx = live.proc = null;
    const v = document.getElementById('live-preview');
    if (v) v.srcObject = null;
    return args;
  };
  uavm.drawLiveAttention = (json) => { draw('live-attention-plot', json); return []; };

  // -- follow playback: a cursor at the player's time on the attention heatmaps (and the
  // spectrogram under them), the Explain curves and the timeline; a click on any of them
  // seeks the player (on the timeline it also moves the window, as above).
  const PLOTS = {  // div -> the axes (x ref, y ref) the cursor is drawn on
    'temporal-plot': [['x', 'paper']],
    'timeline-div': [['x', 'paper']],
    'plot-explain': [['x', 'y domain'], ['x2', 'y2 domain']],
  };
  const plotDiv = (id) => {
    const el = document.getElementById(id);
    if (!el) return null;
    return el.classList.contains('js-plotly-plot') ? el : el.querySelector('.js-plotly-plot');
  };
  const player = () => document.querySelector('#video-in video');
  uavm.playhead = null;
  const cursor = (id, t) => {
    const div = plotDiv(id);
    if (!div || !div.layout || !window.Plotly) return;
    const shapes = div.layout.shapes || [];
    const had = shapes.find((sh) => sh.name === 'playhead');
    if ((had ? had.x0 : null) === t) return;  // drawn there already: nothing to do
    const keep = shapes.filter((sh) => sh.name !== 'playhead');
    const lines = t === null ? [] : PLOTS[id].map(([x, y]) => ({type: 'line', name: 'playhead', xref: x, yref: y,
      x0: t, x1: t, y0: 0, y1: 1, line: {color: '#e4572e', width: 2}, layer: 'above'}));
    window.Plotly.relayout(div, {shapes: keep.concat(lines)});
  };
  const follow = () => {
    const v = player();
    const t = v && v.readyState > 0 ? Math.round(v.currentTime * 100) / 100 : null;
    uavm.playhead = t;
    for (const id of Object.keys(PLOTS)) cursor(id, t);
  };
  const seekable = () => {
    for (const id of Object.keys(PLOTS)) {
      const div = plotDiv(id);
      if (!div || div.__uavmSeek || !div.on) continue;
      div.__uavmSeek = true;
      div.on('plotly_click', (ev) => {
        const p = ev && ev.points && ev.points[0];
        const v = player();
        if (!p || !v || typeof p.x !== 'number' || !Number.isFinite(p.x)) return;
        v.currentTime = Math.max(0, Math.min(p.x, v.duration || p.x));
        follow();
      });
    }
    const v = player();
    if (v && !v.__uavm) {
      v.__uavm = true;
      for (const e of ['timeupdate', 'seeked', 'loadedmetadata']) v.addEventListener(e, follow);
    }
  };
  // figures are redrawn (a toggle, a new clip): the cursor and the clicks are put back
  setInterval(() => { seekable(); follow(); }, 700);
}
