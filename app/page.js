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
}
