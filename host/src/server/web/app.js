// composer web page: vanilla JS, no build step. WORK IN PROGRESS (skeleton).
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
    b.firstChild.textContent = r.name; b.lastChild.textContent = r.description || '';
    b.addEventListener('click', () => openForm(r));
    li.append(b); return li;
  }));
  show('recipes-view');
}

// One field per schema property (string, text, int, float, bool, literal, file).
function field(name, s, required) {
  const wrap = document.createElement('div'); wrap.className = 'field';
  const label = document.createElement('label'); label.htmlFor = 'in-' + name;
  label.textContent = name + (required ? ' *' : '');
  let el;
  if (s.enum) { el = document.createElement('select'); for (const v of s.enum) el.add(new Option(v, v)); }
  else if (s['x-composer-multiline']) el = document.createElement('textarea');
  else if (s.type === 'boolean') { el = document.createElement('input'); el.type = 'checkbox'; }
  else if (s.type === 'integer' || s.type === 'number') { el = document.createElement('input'); el.type = 'number'; el.step = s.type === 'integer' ? '1' : 'any'; }
  else if (s.anyOf) { el = document.createElement('input'); el.type = 'file'; }
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
  $('#form-title').textContent = r.name; $('#form-desc').textContent = r.description || '';
  const form = $('#run-form'); const req = r.inputs?.required || [];
  form.replaceChildren(...Object.entries(r.inputs?.properties || {}).map(([n, s]) => field(n, s, req.includes(n))));
  const go = document.createElement('button'); go.type = 'submit'; go.textContent = 'Run';
  form.append(go); form.dataset.recipe = r.name; show('form-view');
}

// TODO: submit (uploads, typed values, 422 errors beside fields), run view, SSE, graph, Gantt, hitl, past runs.

$('#key-form').addEventListener('submit', async (ev) => {
  ev.preventDefault(); sessionStorage.setItem(KEY, $('#key-input').value.trim());
  try { $('#key-error').textContent = ''; await loadRecipes(); }
  catch (e) { sessionStorage.removeItem(KEY); $('#key-error').textContent = e.status === 401 ? 'That key was not accepted.' : e.message; }
});
$('#signout').addEventListener('click', () => { sessionStorage.removeItem(KEY); show('key-view'); });
if (sessionStorage.getItem(KEY)) loadRecipes().catch(() => show('key-view'));
