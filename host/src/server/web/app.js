// composer web page: vanilla JS, no build step, no CDN (SERVER.md section 6).
'use strict';

const $ = (sel) => document.querySelector(sel);
const KEY = 'composer.key';

// Every /v1 call carries the key; errors come back as {error:{code,message,...}}.
async function api(path, opts = {}) {
  const headers = Object.assign({ Authorization: 'Bearer ' + sessionStorage.getItem(KEY) }, opts.headers || {});
  const res = await fetch(path, Object.assign({}, opts, { headers }));
  const body = res.headers.get('content-type')?.includes('json') ? await res.json() : null;
  if (!res.ok) { const e = new Error(body?.error?.message || res.statusText); e.status = res.status; e.body = body; throw e; }
  return body;
}

function show(id) {
  for (const s of document.querySelectorAll('main > section')) s.hidden = s.id !== id;
  $('#signout').hidden = id === 'key-view';
}

async function loadRecipes() {
  const { recipes } = await api('/v1/recipes');
  const list = $('#recipe-list');
  list.replaceChildren(...recipes.map((r) => {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button'; b.className = 'card'; b.dataset.recipe = r.name;
    b.innerHTML = '<strong></strong><span></span>';
    b.firstChild.textContent = r.inputs?.title || r.name; b.lastChild.textContent = r.description || '';
    b.addEventListener('click', () => { location.hash = '#recipe/' + encodeURIComponent(r.name); });
    li.append(b); return li;
  }));
  show('recipes-view');
  performance.mark('recipes-shown'); // for the page's benchmark
}

// One field per schema property (string, text, int, float, bool, literal, file).
function field(name, s, required) {
  const wrap = document.createElement('div'); wrap.className = 'field';
  const label = document.createElement('label'); label.htmlFor = 'in-' + name;
  // The recipe's label for the input (its id when it has none).
  label.textContent = (s.title || name) + (required ? ' *' : '');
  let el;
  if (s.enum) { el = document.createElement('select'); for (const v of s.enum) el.add(new Option(v, v)); }
  else if (s['x-composer-multiline']) el = document.createElement('textarea');
  else if (s.type === 'boolean') { el = document.createElement('input'); el.type = 'checkbox'; }
  else if (s.type === 'integer' || s.type === 'number') { el = document.createElement('input'); el.type = 'number'; el.step = s.type === 'integer' ? '1' : 'any'; }
  else if (s.anyOf) { el = document.createElement('input'); el.type = 'file'; el.multiple = true; }
  else { el = document.createElement('input'); el.type = 'text'; }
  el.id = 'in-' + name; el.name = name; el.required = required;
  if (s.default !== undefined) { if (el.type === 'checkbox') el.checked = !!s.default; else el.value = s.default; }
  const err = document.createElement('p'); err.className = 'error'; err.id = 'err-' + name;
  el.setAttribute('aria-describedby', err.id);
  wrap.append(label, el, err);
  if (s.description) { const h = document.createElement('p'); h.className = 'hint'; h.textContent = s.description; wrap.insertBefore(h, err); }
  return wrap;
}

function openForm(r) {
  $('#form-title').textContent = r.inputs?.title || r.name; $('#form-desc').textContent = r.description || '';
  const form = $('#run-form'); const req = r.inputs?.required || [];
  form.replaceChildren(...Object.entries(r.inputs?.properties || {}).map(([n, s]) => field(n, s, req.includes(n))));
  const go = document.createElement('button'); go.type = 'submit'; go.textContent = 'Run';
  const ferr = document.createElement('p'); ferr.id = 'form-error'; ferr.className = 'error'; ferr.setAttribute('role', 'alert');
  form.append(ferr, go); form.dataset.recipe = r.name; form._schema = r.inputs || {}; show('form-view');
  form.querySelector('input,select,textarea,button')?.focus();
}

function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') e.textContent = v; else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  e.append(...kids); return e;
}
const SVG = 'http://www.w3.org/2000/svg';
const clip = (t, n) => (t.length > n ? t.slice(0, n - 1) + '…' : t);
function svg(tag, attrs = {}) { const e = document.createElementNS(SVG, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; }

// ---- form submission: uploads first, typed values, 422 errors beside their fields
async function upload(file) {
  const res = await fetch('/v1/files?name=' + encodeURIComponent(file.name), {
    method: 'POST', headers: { Authorization: 'Bearer ' + sessionStorage.getItem(KEY), 'Content-Type': 'application/octet-stream' }, body: file,
  });
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error(body?.error?.message || res.statusText);
  return body.path;
}

async function collectInputs(form) {
  const props = form._schema.properties || {}; const inputs = {};
  for (const [name, s] of Object.entries(props)) {
    const input = form.elements[name];
    if (input.type === 'checkbox') { inputs[name] = input.checked; continue; }
    if (input.type === 'file') {
      if (!input.files.length) continue;
      const paths = [];
      for (const f of input.files) paths.push(await upload(f));
      inputs[name] = paths.length === 1 ? paths[0] : paths; continue;
    }
    const v = input.value;
    if (v === '') continue; // the server applies defaults and reports missing required inputs
    if (s.type === 'integer' && /^-?\d+$/.test(v.trim())) inputs[name] = parseInt(v, 10);
    else if (s.type === 'number' && v.trim() !== '' && !isNaN(Number(v))) inputs[name] = Number(v);
    else inputs[name] = v;
  }
  return inputs;
}

$('#run-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const form = ev.target; const btn = form.querySelector('button[type=submit]');
  for (const p of form.querySelectorAll('p.error')) p.textContent = '';
  for (const i of form.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
  btn.disabled = true;
  try {
    const inputs = await collectInputs(form);
    const run = await api('/v1/recipes/' + encodeURIComponent(form.dataset.recipe) + '/runs', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ inputs }),
    });
    location.hash = '#run/' + run.id;
  } catch (e) {
    const per = e.body?.error?.inputs;
    if (per) {
      let first = null;
      for (const [name, msg] of Object.entries(per)) {
        const p = $('#err-' + CSS.escape(name)); const i = form.elements[name];
        msg = String(msg).replace(/; pass it with `-i [^`]*`/, '');
        if (p) p.textContent = msg; else $('#form-error').textContent += msg + ' ';
        if (i) { i.setAttribute('aria-invalid', 'true'); first = first || i; }
      }
      first?.focus();
    } else $('#form-error').textContent = e.message;
  } finally { btn.disabled = false; }
});

// ---- past runs
async function loadRuns() {
  const { runs } = await api('/v1/runs?limit=30');
  $('#run-list').replaceChildren(...runs.map((r) => el('li', {},
    el('a', { href: '#run/' + r.id, class: 'run-link' },
      el('span', { class: 'badge s-' + r.status, text: r.status }), ' ',
      el('strong', { text: r.recipe }), ' ', el('time', { text: new Date(r.created_at).toLocaleString() }), ' ',
      el('code', { text: r.id })))));
  if (!runs.length) $('#run-list').append(el('li', { class: 'hint', text: 'No runs yet.' }));
}

// ---- run view
let current = null; // {id, plan, states, spans, ctrl, lastSeq, finished}

function layout(plan) {
  // Layers by longest path from START over forward edges; back edges drawn dashed.
  const ids = ['START', ...plan.nodes.map((n) => n.id), 'END'];
  const fwd = plan.edges.filter((e) => !e.back);
  const layer = Object.fromEntries(ids.map((i) => [i, 0]));
  for (let k = 0; k < ids.length; k++) for (const e of fwd) if (layer[e.from] + 1 > layer[e.to]) layer[e.to] = layer[e.from] + 1;
  if (!fwd.some((e) => e.to === 'END')) delete layer.END;
  if (layer.END !== undefined) layer.END = Math.max(...Object.values(layer)) + (plan.edges.some((e) => e.to === 'END') ? 0 : 1);
  const rows = [];
  for (const [id, l] of Object.entries(layer)) (rows[l] = rows[l] || []).push(id);
  const W = 180, H = 44, GX = 30, GY = 46;
  // Back edges, and forward edges that skip a layer, go round the right side
  // (a straight skip would run under the nodes between).
  const side = (e) => e.back || layer[e.to] - layer[e.from] > 1;
  const back = plan.edges.some((e) => layer[e.from] !== undefined && layer[e.to] !== undefined && side(e)) ? 110 : 0;
  const width = Math.max(...rows.map((r) => (r || []).length)) * (W + GX) + GX + back;
  const pos = {};
  rows.forEach((r, y) => (r || []).forEach((id, x) => {
    const rowW = r.length * (W + GX) - GX;
    pos[id] = { x: (width - back - rowW) / 2 + x * (W + GX), y: GY / 2 + y * (H + GY), w: W, h: H };
  }));
  return { pos, width, height: rows.length * (H + GY), W, H, side };
}

function drawGraph(plan) {
  const { pos, width: w0, height, side } = layout(plan);
  let width = w0;
  const g = svg('svg', { role: 'img', 'aria-label': 'Recipe graph', class: 'graph' });
  const defs = svg('defs'); const m = svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: '10', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto-start-reverse' });
  m.append(svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' })); defs.append(m); g.append(defs);
  for (const e of plan.edges) {
    const a = pos[e.from], b = pos[e.to]; if (!a || !b) continue;
    let d;
    const round = side(e);
    if (round) { const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x + b.w, y2 = b.y + b.h / 2; d = `M${x1},${y1} C${x1 + 60},${y1} ${x2 + 60},${y2} ${x2},${y2}`; }
    else { const x1 = a.x + a.w / 2, y1 = a.y + a.h, x2 = b.x + b.w / 2, y2 = b.y; d = `M${x1},${y1} C${x1},${(y1 + y2) / 2} ${x2},${(y1 + y2) / 2} ${x2},${y2}`; }
    const p = svg('path', { d, class: 'edge' + (e.back ? ' back' : ''), 'marker-end': 'url(#arrow)' });
    const t = svg('title'); t.textContent = `${e.from} → ${e.to}` + (e.condition ? ` if ${e.condition}` : '') + (e.max_iterations ? ` (max ${e.max_iterations})` : ''); p.append(t);
    g.append(p);
    if (e.condition) {
      const at = round ? { x: Math.max(a.x, b.x) + a.w + 48, y: (a.y + b.y + a.h) / 2 + 4 } : { x: (a.x + b.x + a.w) / 2 + 4, y: (a.y + a.h + b.y) / 2 };
      const l = svg('text', { ...at, class: 'edge-label' }); l.textContent = clip(e.condition, round ? 16 : 28); g.append(l);
      // Widen the picture so the label is not cut off (10px text: about 6px a character).
      width = Math.max(width, at.x + l.textContent.length * 6 + 4);
    }
  }
  g.setAttribute('viewBox', `0 0 ${width} ${height}`); g.setAttribute('width', width);
  const types = Object.fromEntries(plan.nodes.map((n) => [n.id, n]));
  for (const [id, p] of Object.entries(pos)) {
    const terminal = id === 'START' || id === 'END';
    const n = svg('g', { class: 'node ' + (terminal ? 'terminal' : 'pending'), 'data-node': id, 'data-state': terminal ? 'terminal' : 'pending', transform: `translate(${p.x},${p.y})` });
    n.append(svg('rect', { width: p.w, height: p.h, rx: terminal ? 22 : 6 }));
    const t1 = svg('text', { x: p.w / 2, y: terminal ? 27 : 19, class: 'name' }); t1.textContent = clip(id, 22); n.append(t1);
    if (!terminal) {
      const t2 = svg('text', { x: p.w / 2, y: 35, class: 'sub' }); t2.textContent = types[id].type + (types[id].loop != null ? ` · loop ${types[id].loop + 1}` : ''); n.append(t2);
      const tt = svg('title'); tt.textContent = `${id} (${types[id].type}): pending`; n.append(tt);
    }
    g.append(n);
  }
  $('#graph').replaceChildren(g);
}

function setState(node, state, note) {
  if (!current) return;
  current.states[node] = state;
  const g = document.querySelector(`#graph g.node[data-node="${CSS.escape(node)}"]`);
  if (!g) return;
  g.setAttribute('class', 'node ' + state); g.dataset.state = state;
  const sub = g.querySelector('text.sub'); const type = current.plan.nodes.find((n) => n.id === node)?.type || '';
  if (sub) sub.textContent = clip(note ? `${type} · ${note}` : type, 30);
  const tt = g.querySelector('title'); if (tt) tt.textContent = `${node} (${type}): ${state}${note ? ' · ' + note : ''}`;
  // A text alternative for the picture: every node with its state.
  const pic = $('#graph svg');
  if (pic) pic.setAttribute('aria-label', 'Recipe graph: ' + current.plan.nodes.map((n) => `${n.id} ${current.states[n.id] || 'pending'}`).join(', '));
}

function setStatus(status) {
  const b = $('#run-status'); b.textContent = status; b.className = 'badge s-' + status;
  $('#cancel-run').hidden = ['succeeded', 'failed', 'cancelled'].includes(status);
}

const NODE_STATE = { node_started: 'running', node_finished: 'done', node_skipped: 'skipped', node_failed: 'failed', node_cancelled: 'cancelled', node_waiting: 'waiting' };

function onEvent(kind, ev) {
  const c = current; if (!c) return;
  if (ev.at !== undefined && ev.at >= c.now) { c.now = ev.at; c.lastAt = ev.at; c.wallAt = performance.now(); }
  if (NODE_STATE[kind] && ev.node) {
    const list = c.spans[ev.node] || (c.spans[ev.node] = []);
    let sp = list[list.length - 1];
    if (kind === 'node_started' && sp && sp.end == null && sp.state === 'waiting') { /* resumed after a reply */ }
    else if (kind === 'node_started' || !sp || sp.end != null) { sp = { start: ev.at, end: null }; list.push(sp); }
    if (kind !== 'node_started' && kind !== 'node_waiting') sp.end = ev.at;
    if (kind === 'node_finished') { sp.stats = normStats(ev.stats); sp.cached = ev.cached; sp.duration = ev.duration; sp.plugin = ev.plugin; }
    if (kind === 'node_failed') { sp.error = ev.error; nodeError(ev); }
    sp.state = NODE_STATE[kind];
    setState(ev.node, NODE_STATE[kind], kind === 'node_finished' && ev.cached ? 'cached' : kind === 'node_failed' ? (ev.kind || 'failed') : '');
    if (kind === 'node_waiting') { showHitl(ev); setStatus('waiting'); }
    else if (c.hitl === ev.node) closeHitl();
    if (kind === 'node_started' && $('#run-status').textContent !== 'running') setStatus('running');
  } else if (kind === 'map_progress') {
    setState(ev.node, 'running', `${ev.done}/${ev.total}` + (ev.failed ? ` (${ev.failed} failed)` : ''));
  } else if (kind === 'run_finished' && ev.status === 'waiting') {
    // The run is parked on a hitl node; it goes on (same event stream, later seqs) after a reply.
    setStatus('waiting'); refreshRun('waiting');
  } else if (kind === 'run_finished') {
    const status = ev.status || (ev.success ? 'succeeded' : 'failed');
    c.finished = true; setStatus(status);
    // Nodes the run never reached are not pending any more.
    if (['succeeded', 'failed', 'cancelled'].includes(ev.status)) for (const n of c.plan.nodes) if (!c.states[n.id]) setState(n.id, 'not-run', 'not run');
    if (ev.error) $('#run-error').textContent = errText(ev.error);
    closeHitl();
    refreshRun(status);
  }
  drawTimeline();
}

// SSE over fetch (EventSource cannot send the Authorization header); resumes with Last-Event-ID.
async function stream(c) {
  let retries = 0;
  while (current === c && !c.finished) {
    const headers = { Authorization: 'Bearer ' + sessionStorage.getItem(KEY), Accept: 'text/event-stream' };
    if (c.lastSeq) headers['Last-Event-ID'] = String(c.lastSeq);
    try {
      const res = await fetch(`/v1/runs/${encodeURIComponent(c.id)}/events`, { headers, signal: c.ctrl.signal });
      if (!res.ok) throw new Error('events: ' + res.status);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value; retries = 0;
        let i;
        while ((i = buf.search(/\r?\n\r?\n/)) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i).replace(/^\r?\n\r?\n/, '');
          let id = null, kind = 'message', data = '';
          for (const line of block.split(/\r?\n/)) {
            if (line.startsWith(':')) continue;
            const k = line.indexOf(':'); const f = k < 0 ? line : line.slice(0, k); const v = k < 0 ? '' : line.slice(k + 1).replace(/^ /, '');
            if (f === 'id') id = v; else if (f === 'event') kind = v; else if (f === 'data') data += (data ? '\n' : '') + v;
          }
          if (id !== null) c.lastSeq = Number(id);
          if (data) { try { onEvent(kind, JSON.parse(data)); } catch (err) { console.error(err); } }
        }
      }
    } catch (e) {
      if (c.ctrl.signal.aborted) return;
      console.warn(e);
    }
    if (current !== c || c.finished) return;
    await new Promise((r) => { c.kick = r; setTimeout(r, Math.min(5000, 300 * 2 ** retries++)); });
  }
}

async function openRun(id) {
  if (current) current.ctrl.abort();
  show('run-view');
  // Nothing of the run shown before (its status, its id) stays up while this one loads.
  $('#run-status').textContent = ''; $('#run-status').className = 'badge'; $('#run-id').textContent = ''; $('#cancel-run').hidden = true;
  $('#run-title').textContent = id; $('#run-error').textContent = ''; $('#node-errors').replaceChildren(); $('#node-errors').hidden = true; $('#outputs').replaceChildren(); $('#timeline').replaceChildren(); closeHitl();
  $('#graph').replaceChildren(el('p', { class: 'hint', text: 'Loading…' }));
  let run;
  try { run = await api('/v1/runs/' + encodeURIComponent(id)); }
  catch (e) { $('#graph').replaceChildren(el('p', { class: 'error', text: e.message })); return; }
  const c = current = { id, plan: run.plan || { nodes: [], edges: [] }, states: {}, spans: {}, ctrl: new AbortController(), lastSeq: 0, finished: false, now: 0, run };
  $('#run-title').textContent = run.recipe; $('#run-id').textContent = run.id;
  drawGraph(c.plan); setStatus(run.status);
  if (['succeeded', 'failed', 'cancelled'].includes(run.status)) renderOutputs(run);
  stream(c);
  // Running bars grow between events.
  c.tick = setInterval(() => {
    if (current !== c || c.finished) { clearInterval(c.tick); return; }
    if ($('#run-status').textContent !== 'running' || c.wallAt === undefined) return;
    c.now = c.lastAt + (performance.now() - c.wallAt) / 1000; drawTimeline();
  }, 250);
}

// `expected`: the status the stream announced. The stream's run_finished can
// come before the store holds the run's final record, so ask again shortly
// (up to 10 s) rather than show a stale `running` over it.
async function refreshRun(expected) {
  const c = current; if (!c) return;
  const gen = c.refreshGen = (c.refreshGen || 0) + 1;
  for (let tries = 0; ; tries++) {
    let run;
    try { run = await api('/v1/runs/' + encodeURIComponent(c.id)); }
    catch (e) { $('#run-error').textContent = e.message; return; }
    if (current !== c || c.refreshGen !== gen) return;
    if (expected && run.status !== expected && tries < 40) { await new Promise((r) => setTimeout(r, 250)); continue; }
    c.run = run; if (!expected || run.status === expected) setStatus(run.status);
    renderOutputs(run); drawTimeline(); return;
  }
}

// ---- outputs: audio via blob URLs, JSON pretty, strings as escaped Markdown with the raw text beside
function escapeHtml(s) { return s.replace(/[&<>"']/g, (ch) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[ch])); }
function inline(s) {
  return s.replace(/`([^`]+)`/g, '<code>$1</code>').replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>')
    .replace(/(^|[^*])\*([^*\s][^*]*)\*/g, '$1<em>$2</em>')
    .replace(/\[([^\]]+)\]\((https?:\/\/[^)\s]+)\)/g, '<a href="$2" rel="noopener noreferrer" target="_blank">$1</a>');
}
function markdown(src) {
  const out = []; let list = null, code = null, para = [];
  const flush = () => { if (para.length) { out.push('<p>' + inline(para.join(' ')) + '</p>'); para = []; } if (list) { out.push(`</${list}>`); list = null; } };
  for (const raw of escapeHtml(src).split('\n')) {
    if (code !== null) { if (/^```/.test(raw)) { out.push('<pre><code>' + code.join('\n') + '</code></pre>'); code = null; } else code.push(raw); continue; }
    if (/^```/.test(raw)) { flush(); code = []; continue; }
    let m;
    if ((m = raw.match(/^(#{1,6})\s+(.*)/))) { flush(); const l = Math.min(6, m[1].length + 2); out.push(`<h${l}>${inline(m[2])}</h${l}>`); }
    else if ((m = raw.match(/^\s*([-*]|\d+\.)\s+(.*)/))) { if (para.length) { out.push('<p>' + inline(para.join(' ')) + '</p>'); para = []; } const t = /\d/.test(m[1]) ? 'ol' : 'ul'; if (list !== t) { if (list) out.push(`</${list}>`); out.push(`<${t}>`); list = t; } out.push('<li>' + inline(m[2]) + '</li>'); }
    else if (!raw.trim()) flush();
    else { if (list) { out.push(`</${list}>`); list = null; } para.push(raw); }
  }
  if (code !== null) out.push('<pre><code>' + code.join('\n') + '</code></pre>');
  flush(); return out.join('');
}

async function fileBlobUrl(runId, name) {
  const res = await fetch(`/v1/runs/${encodeURIComponent(runId)}/files/${encodeURIComponent(name)}`, { headers: { Authorization: 'Bearer ' + sessionStorage.getItem(KEY) } });
  if (!res.ok) throw new Error('file ' + name + ': ' + res.status);
  return URL.createObjectURL(await res.blob());
}

async function renderOutputs(run) {
  const box = $('#outputs'); const c = current;
  let files = [];
  try { files = (await api(`/v1/runs/${encodeURIComponent(run.id)}/files`)).files || []; } catch { /* no files */ }
  if (current !== c) return;
  const byName = Object.fromEntries(files.map((f) => [f.name, f]));
  const shown = new Set(); const items = [];
  const fileOf = (v) => { if (typeof v !== 'string') return null; const n = v.split(/[\\/]/).pop(); return byName[n] && (v.includes('/') || v === n) ? byName[n] : null; };
  const audio = (f) => {
    shown.add(f.name);
    const a = el('audio', { controls: '', preload: 'metadata', 'aria-label': 'audio ' + f.name, 'data-file': f.name });
    const link = el('a', { download: f.name, text: 'Download ' + f.name, href: '#' });
    fileBlobUrl(run.id, f.name).then((u) => { a.src = u; link.href = u; }).catch((e) => a.replaceWith(el('p', { class: 'error', text: e.message })));
    return el('div', { class: 'file' }, a, ' ', link);
  };
  for (const [name, v] of Object.entries(run.outputs || {})) {
    const card = el('article', { class: 'output', 'aria-label': 'output ' + name }, el('h3', { text: name }));
    const vals = Array.isArray(v) && v.length && v.every(fileOf) ? v : [v];
    if (vals.every(fileOf)) {
      for (const x of vals) { const f = fileOf(x); card.append(f.content_type?.startsWith('audio/') ? audio(f) : fileLink(run.id, f, shown)); }
    } else if (typeof v === 'string') {
      const md = el('div', { class: 'markdown' }); md.innerHTML = markdown(v);
      card.append(md, el('details', {}, el('summary', { text: 'Plain text' }), el('pre', { class: 'text', text: v })));
    } else card.append(el('pre', { class: 'json', text: JSON.stringify(v, null, 2) }));
    items.push(card);
  }
  const rest = files.filter((f) => !shown.has(f.name));
  if (rest.length) items.push(el('article', { class: 'output' }, el('h3', { text: 'Files' }), ...rest.map((f) => f.content_type?.startsWith('audio/') ? audio(f) : fileLink(run.id, f, shown))));
  if (!items.length) items.push(el('p', { class: 'hint', text: ['succeeded', 'failed', 'cancelled'].includes(run.status) ? 'No outputs.' : 'No outputs yet.' }));
  box.replaceChildren(...items);
}
function fileLink(runId, f, shown) {
  shown.add(f.name);
  const a = el('a', { href: '#', text: `${f.name} (${f.bytes} bytes)` });
  a.addEventListener('click', async (e) => { if (a.dataset.ready) return; e.preventDefault(); a.href = await fileBlobUrl(runId, f.name); a.download = f.name; a.dataset.ready = '1'; a.click(); });
  return el('div', { class: 'file' }, a);
}

// ---- hitl
function showHitl(ev) {
  const c = current; c.hitl = ev.node;
  const form = el('form', { id: 'hitl-form', 'aria-labelledby': 'hitl-title' });
  form.append(el('h2', { id: 'hitl-title', text: `${ev.node} is waiting for you` }));
  if (ev.prompt) form.append(el('p', { text: ev.prompt }));
  if (ev.shown !== undefined && ev.shown !== null) form.append(el('pre', { class: 'json', text: typeof ev.shown === 'string' ? ev.shown : JSON.stringify(ev.shown, null, 2) }));
  const fields = ev.required_fields || [];
  fields.forEach((f, i) => form.append(el('div', { class: 'field' }, el('label', { for: 'hitl-' + i, text: f + ' *' }), el('input', { id: 'hitl-' + i, name: f, type: 'text', required: '', placeholder: 'text, or JSON such as true / 3 / {"a":1}' }))));
  form.append(el('div', { class: 'field' }, el('label', { for: 'hitl-extra', text: 'Other fields (JSON mapping, optional)' }), el('textarea', { id: 'hitl-extra', name: '__extra', rows: '2' })));
  const err = el('p', { class: 'error', role: 'alert' });
  form.append(err, el('button', { type: 'submit', text: 'Send reply' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault(); err.textContent = '';
    let reply = {};
    try { const x = form.elements.__extra.value.trim(); if (x) reply = JSON.parse(x); } catch { err.textContent = 'Other fields: not valid JSON.'; return; }
    for (const f of fields) { const v = form.elements[f].value; try { reply[f] = JSON.parse(v); } catch { reply[f] = v; } }
    try {
      await api(`/v1/runs/${encodeURIComponent(c.id)}/replies/${encodeURIComponent(ev.node)}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(reply) });
      closeHitl(); setState(ev.node, 'running', 'replied'); setStatus('running'); c.kick?.();
    } catch (x) { err.textContent = x.message; }
  });
  $('#hitl').replaceChildren(form); $('#hitl').hidden = false;
  if (c.lastSeq && !c.replaying) form.querySelector('input,textarea')?.focus();
}
// A failed node's error in words beside the graph, not only in a tooltip.
function nodeError(ev) {
  const list = $('#node-errors');
  list.querySelector(`li[data-node="${CSS.escape(ev.node)}"]`)?.remove();
  list.append(el('li', { 'data-node': ev.node }, el('strong', { text: ev.node }),
    ` failed (${ev.kind || 'error'})${ev.continued ? ', the run went on' : ''}: `, el('span', { class: 'msg', text: errText(ev.error) })));
  list.hidden = false;
}
function closeHitl() { if (current) current.hitl = null; $('#hitl').replaceChildren(); $('#hitl').hidden = true; }

// ---- Gantt timeline of node spans, with per-node metrics
function drawTimeline() {
  const c = current; if (!c) return;
  const spans = Object.entries(c.spans).filter(([, l]) => l.length);
  if (!spans.length) { $('#timeline').replaceChildren(); return; }
  const end = Math.max(c.now, ...spans.flatMap(([, l]) => l.map((s) => s.end ?? c.now)), 1e-3);
  const L = 140, W = 760, RH = 26, T = 22;
  const g = svg('svg', { viewBox: `0 0 ${L + W + 170} ${T + spans.length * RH + 6}`, class: 'gantt', role: 'img', 'aria-label': 'Timeline of node spans' });
  for (let k = 0; k <= 4; k++) { const x = L + (W * k) / 4; g.append(svg('line', { x1: x, x2: x, y1: T - 4, y2: T + spans.length * RH, class: 'tick' })); const t = svg('text', { x, y: 12, class: 'axis' }); t.textContent = fmtSecs((end * k) / 4); g.append(t); }
  spans.sort((a, b) => a[1][0].start - b[1][0].start).forEach(([node, list], i) => {
    const y = T + i * RH;
    const name = svg('text', { x: L - 8, y: y + 17, class: 'label' }); name.textContent = clip(node, 20); g.append(name);
    let s;
    for (s of list) {
    const x = L + (s.start / end) * W; const w = Math.max(2, (((s.end ?? c.now) - s.start) / end) * W);
    const r = svg('rect', { x, y: y + 4, width: w, height: RH - 8, rx: 3, class: 'bar ' + (s.state || 'running') + (s.cached ? ' cached' : '') });
    const st = s.stats || {};
    const tip = [`${node}: ${s.state}`, `start ${fmtSecs(s.start)}`, s.end != null ? `took ${fmtSecs(s.end - s.start)}` : 'still running',
      st.calls != null ? `calls ${st.calls}` : '', (st.input_tokens || st.output_tokens) ? `tokens ${st.input_tokens || 0} in / ${st.output_tokens || 0} out` : '',
      st.cost_usd != null ? `cost $${st.cost_usd}` : '', s.cached ? 'cached' : '', s.plugin?.fuel ? `fuel ${s.plugin.fuel}` : '', s.error ? 'error: ' + errText(s.error) : ''].filter(Boolean).join('\n');
    const tt = svg('title'); tt.textContent = tip; r.append(tt); g.append(r);
    }
    const st = s.stats || {};
    const m = svg('text', { x: L + W + 8, y: y + 17, class: 'metric' });
    m.textContent = (list.length > 1 ? `${list.length}× · last ` : '') + (s.end != null ? fmtSecs(s.end - s.start) : '…') + (st.calls ? ` · ${st.calls} call${st.calls > 1 ? 's' : ''}` : '') + ((st.input_tokens || st.output_tokens) ? ` · ${(st.input_tokens || 0) + (st.output_tokens || 0)} tok` : '') + (st.cost_usd ? ` · $${st.cost_usd.toFixed(4)}` : '') + (s.cached ? ' · cached' : '');
    g.append(m);
  });
  const tot = c.run?.metrics?.totals;
  const summary = tot ? el('p', { class: 'hint', text: `wall ${fmtSecs(c.run.metrics.wall_secs)} · ${tot.calls} call${tot.calls === 1 ? '' : 's'} · ${tot.tokens} tokens` + (tot.cost_usd != null ? ` · $${tot.cost_usd}` : '') + ` · cache hits ${c.run.metrics.cache?.hits ?? 0}/${c.run.metrics.cache?.eligible ?? 0}` }) : '';
  $('#timeline').replaceChildren(g, summary);
}
// Provider stats name tokens by direction and cost in USD; accept the short names too.
function normStats(st) {
  if (!st) return st;
  const out = Object.assign({}, st);
  if (out.input_tokens == null && out.output_tokens == null && st.tokens != null) out.input_tokens = st.tokens;
  if (out.cost_usd == null && st.cost != null) out.cost_usd = st.cost;
  return out;
}
function fmtSecs(s) { return s < 0.01 ? (s * 1000).toFixed(s ? 1 : 0) + ' ms' : s < 1 ? Math.round(s * 1000) + ' ms' : s.toFixed(s < 10 ? 2 : 1) + ' s'; }
function errText(e) { return typeof e === 'string' ? e : e?.message ? (e.kind && e.kind !== e.message ? `${e.kind}: ${e.message}` : e.message) : JSON.stringify(e); }

$('#cancel-run').addEventListener('click', async () => {
  if (!current) return;
  try { await api('/v1/runs/' + encodeURIComponent(current.id), { method: 'DELETE' }); } catch (e) { $('#run-error').textContent = e.message; }
});

// ---- routing: #recipes, #recipe/NAME, #run/ID
async function route() {
  if (!sessionStorage.getItem(KEY)) { show('key-view'); return; }
  const h = decodeURIComponent(location.hash.slice(1));
  if (!h.startsWith('run/') && current) { current.ctrl.abort(); current = null; }
  try {
    if (h.startsWith('run/')) await openRun(h.slice(4));
    else if (h.startsWith('recipe/')) openForm(await api('/v1/recipes/' + encodeURIComponent(h.slice(7))));
    else { await loadRecipes(); await loadRuns(); }
  } catch (e) {
    if (e.status === 401) { sessionStorage.removeItem(KEY); show('key-view'); } else { await loadRecipes().catch(() => show('key-view')); }
  }
}
window.addEventListener('hashchange', route);

$('#key-form').addEventListener('submit', async (ev) => {
  ev.preventDefault(); sessionStorage.setItem(KEY, $('#key-input').value.trim());
  try { $('#key-error').textContent = ''; await api('/v1/recipes'); await route(); }
  catch (e) { sessionStorage.removeItem(KEY); $('#key-error').textContent = e.status === 401 ? 'That key was not accepted.' : e.message; }
});
$('#signout').addEventListener('click', () => { if (current) { current.ctrl.abort(); current = null; } sessionStorage.removeItem(KEY); location.hash = ''; show('key-view'); });
route();
