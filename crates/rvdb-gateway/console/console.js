// rvdb web console: one page, hand-written, no framework, nothing fetched from elsewhere.
// It calls the gateway's own REST API (/v1), MCP endpoint (/mcp: backups and restores with progress) and /metrics
// on the same origin. The API key (if the server wants one) lives in this tab's sessionStorage only.
'use strict';

(() => {
  const KEY_STORAGE = 'rvdb.console.apiKey';
  const MCP_PROTOCOL = '2025-06-18';
  const POLL_MS = 2000;
  const HISTORY_MS = 5 * 60 * 1000;
  const MAP_DEFAULT_LIMIT = 5000;
  const MAP_MAX_LIMIT = 20000;
  const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#59a14f', '#76b7b2', '#edc948', '#b07aa1', '#ff9da7',
    '#9c755f', '#17becf', '#bcbd22', '#8c6bb1'];
  const SERIES_COLOURS = ['#6366f1', '#10b981', '#f59e0b', '#ef4444', '#06b6d4', '#a855f7', '#84cc16', '#ec4899',
    '#64748b', '#0ea5e9'];
  const VIRIDIS = ['#440154', '#414487', '#2a788e', '#22a884', '#7ad151', '#fde725'];
  const MISSING_COLOUR = '#9ca3af';
  const NAMED_COLOURS = {red: '#e15759', green: '#59a14f', blue: '#4e79a7', orange: '#f28e2b', yellow: '#e6b800',
    purple: '#9467bd', violet: '#9467bd', pink: '#f17cb0', brown: '#9c755f', cyan: '#17becf', teal: '#2a9d8f',
    black: '#3b3b3b', white: '#d9d9d9', grey: '#8c8c8c', gray: '#8c8c8c', magenta: '#d33682', gold: '#d4a017'};
  const STEMMERS = ['arabic', 'danish', 'dutch', 'english', 'finnish', 'french', 'german', 'greek', 'hungarian',
    'italian', 'norwegian', 'portuguese', 'romanian', 'russian', 'spanish', 'swedish', 'tamil', 'turkish'];

  const state = {
    key: sessionStorage.getItem(KEY_STORAGE) || '',
    renderToken: 0,
    cleanups: [],
    stores: [],              // the last store list seen
    search: {},              // per store: the last search {label, query, hits: [{id, distance, vector}]}
    pendingSearch: null,     // {store, id}: "search similar" from a point's dialog
    pointsView: {},          // per store: {filter, limit}
    mcp: null,               // {sessionId, protocol}
    mcpId: 1,
    metrics: null,           // history of the live charts (kept across pages)
    statusAt: 0,
    signinShown: false,
  };

  // ------------------------------------------------------------------------------------------------------------
  // DOM helpers

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  /** Creates an element: h('td', {class: 'num', dataset: {id}}, 'text', child, [children]). Never sets `style`. */
  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    let value;
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v == null || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else if (k === 'value') value = v;
        else if (k === 'dataset') Object.assign(e.dataset, v);
        else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
        else if (k === 'style') throw new Error('no inline styles (CSP)');
        else e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    append(e, children);
    if (value !== undefined) e.value = value;
    return e;
  }

  function append(parent, children) {
    for (const c of children) {
      if (c == null || c === false) continue;
      if (Array.isArray(c)) append(parent, c);
      else if (c instanceof Node) parent.appendChild(c);
      else parent.appendChild(document.createTextNode(String(c)));
    }
  }

  /** Replaces an element's children (null and false skipped, arrays flattened). */
  function fill(parent, ...children) {
    parent.textContent = '';
    append(parent, children);
    return parent;
  }

  function field(label, input, hint, cls) {
    if (!input.id) throw new Error('a field needs an id');
    return h('div', {class: 'field' + (cls ? ' ' + cls : '')},
      h('label', {for: input.id}, label), input, hint ? h('p', {class: 'hint'}, hint) : null);
  }

  function options(list, selected) {
    return list.map(o => {
      const [value, label] = Array.isArray(o) ? o : [o, o];
      return h('option', {value, selected: value === selected}, label);
    });
  }

  // ------------------------------------------------------------------------------------------------------------
  // Formatting

  const nf = new Intl.NumberFormat('en-US');
  const fmtInt = n => (n == null || Number.isNaN(n) ? '—' : nf.format(Math.round(n)));

  function fmtBytes(b) {
    if (b == null) return '—';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    let v = b;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v : v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)) + ' ' + units[i];
  }

  function fmtDistance(d) {
    if (d == null) return '—';
    const a = Math.abs(d);
    if (a !== 0 && (a < 1e-4 || a >= 1e6)) return d.toExponential(3);
    return d.toFixed(4);
  }

  function fmtSeconds(s) {
    if (s == null || !Number.isFinite(s)) return '—';
    if (s < 0.001) return (s * 1e6).toFixed(0) + ' µs';
    if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 2 : 1) + ' ms';
    return s.toFixed(2) + ' s';
  }

  function fmtAgo(ms) {
    if (!ms) return '—';
    const s = (Date.now() - ms) / 1000;
    if (s < 0) return 'just now';
    if (s < 60) return s.toFixed(1) + ' s ago';
    if (s < 3600) return Math.round(s / 60) + ' min ago';
    return new Date(ms).toLocaleString();
  }

  function fmtDate(iso) {
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
  }

  function compact(value, max = 160) {
    let s = typeof value === 'string' ? value : JSON.stringify(value);
    if (s === undefined) s = '';
    return s.length > max ? s.slice(0, max - 1) + '…' : s;
  }

  const pretty = v => JSON.stringify(v, null, 2);

  /** One-line JSON with a space after each ':' and ',' (outside strings): readable in a small textarea. */
  function oneLine(v) {
    if (Array.isArray(v)) return '[' + v.map(oneLine).join(', ') + ']';
    if (v && typeof v === 'object') return '{' + Object.entries(v).map(([k, x]) => JSON.stringify(k) + ': ' + oneLine(x)).join(', ') + '}';
    return JSON.stringify(v);
  }
  const enc = encodeURIComponent;

  // ------------------------------------------------------------------------------------------------------------
  // Alerts, status, sign-in

  function showError(message, title = 'Error') {
    $('#alert-title').textContent = title;
    $('#alert-message').textContent = message;
    $('#alert').hidden = false;
  }

  function clearError() {
    $('#alert').hidden = true;
    $('#alert-message').textContent = '';
  }

  function flash(message) {
    $('#status').textContent = message;
    state.statusAt = Date.now();
    state.statusKeep = 1;
    clearTimeout(state.statusTimer);
    state.statusTimer = setTimeout(() => { $('#status').textContent = ''; }, 10000);
  }

  function updateKeyUi() {
    $('#key-state').hidden = !state.key;
    $('#signout').hidden = !state.key;
  }

  /** A 401: the view is replaced by the sign-in panel, which says whether a key was missing or refused. */
  function requireSignIn(serverMessage, keySent) {
    runCleanups();
    const refused = keySent;
    $('#signin-title').textContent = refused ? 'The API key was refused' : 'API key required';
    $('#signin-message').textContent = refused
      ? 'The server did not accept the key you entered. Check it and try again.'
      : 'This rvdb server requires an API key. Enter a read-write key, or a read-only key to browse and search.';
    const sm = $('#signin-server-message');
    sm.textContent = serverMessage ? 'Server: ' + serverMessage : '';
    sm.hidden = !serverMessage;
    $('#signin').hidden = false;
    $('#view').hidden = true;
    clearError();
    if (!state.signinShown) {
      state.signinShown = true;
      const input = $('#signin-key');
      input.value = '';
      input.focus();
    }
    document.title = 'Sign in · rvdb console';
  }

  function hideSignIn() {
    $('#signin').hidden = true;
    $('#view').hidden = false;
    state.signinShown = false;
  }

  // ------------------------------------------------------------------------------------------------------------
  // HTTP

  class ApiError extends Error {
    constructor(status, code, message, details) {
      super(message);
      this.status = status;
      this.code = code;
      this.details = details;
      this.shown = false;
    }
  }

  function authHeaders(headers = {}) {
    if (state.key) headers.Authorization = 'Bearer ' + state.key;
    return headers;
  }

  async function request(method, path, body, opts = {}) {
    const headers = authHeaders({Accept: opts.raw ? 'text/plain, */*' : 'application/json'});
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const keySent = !!state.key;
    let res;
    try {
      res = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store'});
    } catch (e) {
      const err = new ApiError(0, 'network', `Cannot reach the server (${e.message}). Is rvdb still running?`);
      if (!opts.quiet) { showError(err.message); err.shown = true; }
      throw err;
    }
    const text = await res.text();
    if (res.ok) {
      if (opts.raw) return text;
      if (!text) return {};
      try { return JSON.parse(text); } catch (e) {
        const err = new ApiError(res.status, 'bad_response', `The server sent something that is not JSON (${e.message})`);
        if (!opts.quiet) { showError(err.message); err.shown = true; }
        throw err;
      }
    }
    let data = null;
    try { data = JSON.parse(text); } catch { /* not JSON */ }
    const e = (data && data.error) || {};
    const message = (typeof e === 'object' && e.message) || (typeof e === 'string' && e)
      || (text && !data ? text.trim().slice(0, 300) : '') || `HTTP ${res.status} ${res.statusText}`;
    const err = new ApiError(res.status, e.code || String(res.status), message, e.details);
    if (res.status === 401) {
      requireSignIn(message, keySent);
      err.shown = true;
      throw err;
    }
    if (!opts.quiet) {
      if (res.status === 403) showError(message, 'Not allowed:');
      else showError(message);
      err.shown = true;
    }
    throw err;
  }

  const api = {
    get: (p, o) => request('GET', p, undefined, o),
    post: (p, b, o) => request('POST', p, b === undefined ? {} : b, o),
    put: (p, b, o) => request('PUT', p, b, o),
    del: (p, o) => request('DELETE', p, undefined, o),
  };

  // ------------------------------------------------------------------------------------------------------------
  // MCP over Streamable HTTP: backups and restores report progress as notifications on an SSE stream.

  function mcpPost(message, session) {
    const headers = authHeaders({'Content-Type': 'application/json', Accept: 'application/json, text/event-stream'});
    if (session && session.sessionId) headers['Mcp-Session-Id'] = session.sessionId;
    if (session && session.protocol) headers['MCP-Protocol-Version'] = session.protocol;
    return fetch('/mcp', {method: 'POST', headers, body: JSON.stringify(message), cache: 'no-store'});
  }

  async function mcpHttpError(res, keySent) {
    const text = await res.text().catch(() => '');
    let data = null;
    try { data = JSON.parse(text); } catch { /* not JSON */ }
    const e = data && data.error;
    const message = (e && (e.message || (typeof e === 'string' ? e : ''))) || text.trim().slice(0, 300)
      || `HTTP ${res.status} ${res.statusText}`;
    const err = new ApiError(res.status, (e && e.code) || String(res.status), message);
    if (res.status === 401) { requireSignIn(message, keySent); err.shown = true; }
    return err;
  }

  /** Reads the JSON-RPC answer with `id`, from JSON or from an SSE stream, passing every other message on. */
  async function mcpRead(res, id, onMessage) {
    const type = res.headers.get('content-type') || '';
    if (!type.includes('text/event-stream')) {
      const text = await res.text();
      let msg;
      try { msg = JSON.parse(text); } catch { throw new ApiError(res.status, 'bad_response', 'MCP answered with something that is not JSON'); }
      const all = Array.isArray(msg) ? msg : [msg];
      let answer = null;
      for (const m of all) {
        if (m && m.id === id && ('result' in m || 'error' in m)) answer = m;
        else if (m) onMessage(m);
      }
      if (!answer) throw new ApiError(res.status, 'bad_response', 'MCP answered without a result');
      return answer;
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    let answer = null;
    const handle = block => {
      const data = block.split('\n').filter(l => l.startsWith('data:')).map(l => l.slice(5).replace(/^ /, '')).join('\n');
      if (!data.trim()) return;
      let msg;
      try { msg = JSON.parse(data); } catch { return; }
      if (msg && msg.id === id && ('result' in msg || 'error' in msg)) answer = msg;
      else if (msg) onMessage(msg);
    };
    for (;;) {
      const {value, done} = await reader.read();
      if (value) buf = (buf + decoder.decode(value, {stream: true})).replace(/\r\n?/g, '\n');
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        handle(buf.slice(0, i));
        buf = buf.slice(i + 2);
      }
      if (answer) { reader.cancel().catch(() => {}); return answer; }
      if (done) break;
    }
    if (buf.trim()) handle(buf);
    if (answer) return answer;
    throw new ApiError(0, 'bad_response', 'The MCP stream ended without a result');
  }

  async function mcpSession(fresh) {
    if (state.mcp && !fresh) return state.mcp;
    state.mcp = null;
    const id = state.mcpId++;
    const keySent = !!state.key;
    const res = await mcpPost({jsonrpc: '2.0', id, method: 'initialize', params: {protocolVersion: MCP_PROTOCOL,
      capabilities: {}, clientInfo: {name: 'rvdb-console', version: '1'}}});
    if (!res.ok) throw await mcpHttpError(res, keySent);
    const session = {sessionId: res.headers.get('mcp-session-id'), protocol: MCP_PROTOCOL};
    const answer = await mcpRead(res, id, () => {});
    if (answer.error) throw new ApiError(0, 'mcp', answer.error.message || 'MCP initialize failed');
    session.protocol = (answer.result && answer.result.protocolVersion) || MCP_PROTOCOL;
    const ack = await mcpPost({jsonrpc: '2.0', method: 'notifications/initialized'}, session);
    await ack.text().catch(() => '');
    if (!ack.ok) throw await mcpHttpError(ack, keySent);
    state.mcp = session;
    return session;
  }

  /** Calls an MCP tool with a progress token; `onProgress({progress, total, message})` per notification. */
  async function mcpTool(name, args, onProgress) {
    for (let attempt = 0; ; attempt++) {
      const session = await mcpSession(attempt > 0);
      const id = state.mcpId++;
      const token = `console-${Date.now().toString(36)}-${id}`;
      const keySent = !!state.key;
      const res = await mcpPost({jsonrpc: '2.0', id, method: 'tools/call',
        params: {name, arguments: args, _meta: {progressToken: token}}}, session);
      if (res.status === 404 && session.sessionId && attempt === 0) { await res.text().catch(() => ''); continue; }
      if (!res.ok) throw await mcpHttpError(res, keySent);
      const answer = await mcpRead(res, id, m => {
        if (m.method === 'notifications/progress' && m.params && m.params.progressToken === token) onProgress(m.params);
      });
      if (answer.error) throw new ApiError(0, 'mcp', answer.error.message || 'the MCP call failed');
      const r = answer.result || {};
      const text = (r.content || []).filter(c => c.type === 'text').map(c => c.text).join('\n');
      if (r.isError) throw new ApiError(0, 'tool_error', text || `${name} failed`);
      if (r.structuredContent) return r.structuredContent;
      try { return JSON.parse(text); } catch { return {text}; }
    }
  }

  // ------------------------------------------------------------------------------------------------------------
  // Dialogs

  /** A confirmation; with `typed`, the user must type that text (a store's name) before confirming. */
  function confirmDialog({title, message, confirmText = 'Delete', typed}) {
    const dialog = $('#confirm-dialog');
    const input = $('#confirm-input');
    const ok = $('#confirm-ok');
    $('#confirm-title').textContent = title;
    $('#confirm-message').textContent = message;
    ok.textContent = confirmText;
    $('#confirm-typed').hidden = !typed;
    input.value = '';
    $('#confirm-label').textContent = typed ? `Type “${typed}” to confirm` : '';
    ok.disabled = !!typed;
    dialog.returnValue = '';
    return new Promise(resolve => {
      const onInput = () => { ok.disabled = input.value !== typed; };
      const onSubmit = ev => { if (typed && input.value !== typed) ev.preventDefault(); };
      const onCancel = () => dialog.close('cancel');
      const onClose = () => {
        input.removeEventListener('input', onInput);
        $('#confirm-form').removeEventListener('submit', onSubmit);
        $('#confirm-cancel').removeEventListener('click', onCancel);
        dialog.removeEventListener('close', onClose);
        resolve(dialog.returnValue === 'ok');
      };
      input.addEventListener('input', onInput);
      $('#confirm-form').addEventListener('submit', onSubmit);
      $('#confirm-cancel').addEventListener('click', onCancel);
      dialog.addEventListener('close', onClose);
      dialog.showModal();
      (typed ? input : $('#confirm-cancel')).focus();
    });
  }

  async function dropStore(name) {
    const yes = await confirmDialog({
      title: `Drop store “${name}”?`,
      message: `Every point in store “${name}” is deleted. This cannot be undone (back it up first if the data matters).`,
      confirmText: 'Drop store', typed: name,
    });
    if (!yes) return false;
    await api.del(`/v1/stores/${enc(name)}`);
    delete state.search[name];
    flash(`Store “${name}” dropped.`);
    return true;
  }

  let pointDialogCtx = null;

  async function openPoint(store, id) {
    const p = await api.get(`/v1/stores/${enc(store)}/points/${enc(id)}?with_vector=true`);
    const dialog = $('#point-dialog');
    pointDialogCtx = {store, id, vector: p.vector};
    $('#point-title').textContent = p.id;
    const vec = p.vector || [];
    const preview = vec.slice(0, 12).map(x => Number(x).toPrecision(4)).join(', ') + (vec.length > 12 ? ', …' : '');
    const norm = Math.sqrt(vec.reduce((a, x) => a + x * x, 0));
    fill($('#point-body'), 
      h('dl', {class: 'kv'},
        h('dt', null, 'Store'), h('dd', null, h('a', {href: `#/store/${enc(store)}`}, store)),
        h('dt', null, 'Id'), h('dd', {class: 'mono', id: 'point-id'}, p.id),
        h('dt', null, 'Version'), h('dd', {class: 'mono'}, String(p.version)),
        h('dt', null, 'Vector'), h('dd', null, `${vec.length} dimensions, length ${norm.toPrecision(5)}`)),
      h('h3', {class: 'small muted'}, 'Metadata'),
      h('pre', {class: 'json', id: 'point-metadata'}, pretty(p.metadata ?? {})),
      h('h3', {class: 'small muted'}, 'Vector'),
      h('p', {class: 'vector-preview'}, '[' + preview + ']'),
      h('details', {class: 'json-preview'}, h('summary', null, `All ${vec.length} values`),
        h('pre', {class: 'json', id: 'point-vector'}, JSON.stringify(vec))));
    if (!dialog.open) dialog.showModal();
    $('#point-close').focus();
  }

  // ------------------------------------------------------------------------------------------------------------
  // Router

  function runCleanups() {
    for (const f of state.cleanups.splice(0)) {
      try { f(); } catch { /* already gone */ }
    }
  }

  function onCleanup(f) { state.cleanups.push(f); }

  function every(ms, f) {
    let stopped = false;
    let timer = null;
    const tick = async () => {
      if (stopped) return;
      try { await f(); } catch { /* shown by the caller */ }
      if (!stopped) timer = setTimeout(tick, ms);
    };
    timer = setTimeout(tick, ms);
    onCleanup(() => { stopped = true; clearTimeout(timer); });
  }

  function parseRoute() {
    const [raw, search = ''] = location.hash.replace(/^#\/?/, '').split('?');
    const query = new URLSearchParams(search);
    const parts = raw.split('/').filter(Boolean).map(s => { try { return decodeURIComponent(s); } catch { return s; } });
    if (parts.length === 0 || parts[0] === 'stores') {
      if (parts[1] === 'new') return {page: 'create', nav: 'stores'};
      return {page: 'stores', nav: 'stores'};
    }
    if (parts[0] === 'store' && parts[1]) {
      const tab = parts[2] || 'overview';
      return {page: 'store', nav: 'stores', store: parts[1], tab, query};
    }
    if (parts[0] === 'backups') return {page: 'backups', nav: 'backups'};
    if (parts[0] === 'cluster') return {page: 'cluster', nav: 'cluster'};
    if (parts[0] === 'metrics') return {page: 'metrics', nav: 'metrics'};
    return {page: 'notfound', nav: ''};
  }

  async function render() {
    runCleanups();
    const token = ++state.renderToken;
    const route = parseRoute();
    clearError();
    if (state.statusKeep > 0) state.statusKeep--; else $('#status').textContent = '';
    for (const a of $$('.mainnav a')) {
      if (a.dataset.nav === route.nav) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (!$('#signin').hidden) hideSignIn();
    const view = $('#view');
    fill(view, h('div', {class: 'empty'}, h('span', {class: 'spinner', 'aria-hidden': 'true'}), ' Loading…'));
    const ctx = {token, alive: () => token === state.renderToken, view};
    try {
      if (route.page === 'stores') await pageStores(ctx);
      else if (route.page === 'create') await pageCreate(ctx);
      else if (route.page === 'store') await pageStore(ctx, route.store, route.tab, route.query);
      else if (route.page === 'backups') await pageBackups(ctx);
      else if (route.page === 'cluster') await pageCluster(ctx);
      else if (route.page === 'metrics') await pageMetrics(ctx);
      else {
        document.title = 'Not found · rvdb console';
        fill(view, h('div', {class: 'panel hero-empty'}, h('h2', null, 'No such page'),
          h('p', null, h('a', {href: '#/stores'}, 'Go to the stores'))));
      }
    } catch (e) {
      if (!ctx.alive() || (e instanceof ApiError && e.status === 401)) return;
      if (!(e instanceof ApiError) || !e.shown) showError(e.message || String(e));
      fill(view, h('div', {class: 'panel hero-empty', id: 'page-error'},
        h('h2', null, 'This page could not be loaded'),
        h('p', {class: 'muted'}, e.message || String(e)),
        h('div', {class: 'btn-group'}, h('a', {class: 'btn', href: '#/stores'}, 'Stores'),
          h('button', {class: 'btn btn-primary', type: 'button', onclick: () => render()}, 'Try again'))));
    }
  }

  function setTitle(t) { document.title = `${t} · rvdb console`; }

  function pageHead(title, sub, actions, crumbs) {
    return h('div', {class: 'page-head'},
      h('div', null,
        crumbs ? h('div', {class: 'crumbs'}, crumbs) : null,
        h('h1', null, title),
        sub ? h('p', {class: 'sub', id: 'page-sub'}, sub) : null),
      actions ? h('div', {class: 'btn-group'}, actions) : null);
  }

  // ------------------------------------------------------------------------------------------------------------
  // Stores

  async function loadStores() {
    const r = await api.get('/v1/stores');
    state.stores = (r.stores || []).slice().sort((a, b) => a.name.localeCompare(b.name));
    return state.stores;
  }

  function indexCell(s) {
    const status = s.index_status || 'none';
    return h('td', null, h('span', {class: 'mono'}, s.index), ' ',
      s.index === 'hnsw' ? h('span', {class: `badge state-${status}`}, status) : null,
      s.quantization && s.quantization !== 'none' ? h('span', {class: 'tag'}, s.quantization) : null);
  }

  async function pageStores(ctx) {
    setTitle('Stores');
    const stores = await loadStores();
    if (!ctx.alive()) return;
    const total = stores.reduce((a, s) => a + (s.points || 0), 0);
    const refresh = h('button', {type: 'button', class: 'btn', id: 'stores-refresh', onclick: () => render()}, 'Refresh');
    const create = h('a', {class: 'btn btn-primary', href: '#/stores/new', id: 'new-store'}, '+ New store');
    const table = h('table', {class: 'data', id: 'stores-table'},
      h('caption', {class: 'sr-only'}, 'Stores'),
      h('thead', null, h('tr', null,
        h('th', {scope: 'col'}, 'Name'), h('th', {scope: 'col', class: 'num'}, 'Dimension'),
        h('th', {scope: 'col'}, 'Metric'), h('th', {scope: 'col'}, 'Index'),
        h('th', {scope: 'col', class: 'num'}, 'Shards × RF'), h('th', {scope: 'col', class: 'num'}, 'Points'),
        h('th', {scope: 'col', class: 'num'}, 'Deleted'), h('th', {scope: 'col', class: 'num'}, 'Memory'),
        h('th', {scope: 'col', class: 'num'}, 'Disk'), h('th', {scope: 'col'}, h('span', {class: 'sr-only'}, 'Actions')))),
      h('tbody', null, stores.map(s => h('tr', {dataset: {store: s.name}},
        h('th', {scope: 'row'}, h('a', {href: `#/store/${enc(s.name)}`, class: 'store-link'}, s.name),
          s.embedding ? h('div', {class: 'small muted'}, `text · ${s.embedding.model}`) : null),
        h('td', {class: 'num'}, fmtInt(s.dimension)),
        h('td', null, s.metric),
        indexCell(s),
        h('td', {class: 'num'}, `${s.shards} × ${s.replication_factor}`),
        h('td', {class: 'num', dataset: {points: String(s.points)}}, fmtInt(s.points)),
        h('td', {class: 'num'}, fmtInt(s.deleted_points)),
        h('td', {class: 'num'}, fmtBytes(s.memory_bytes)),
        h('td', {class: 'num'}, fmtBytes(s.disk_bytes)),
        h('td', {class: 'right nowrap'}, h('div', {class: 'btn-group'},
          h('a', {class: 'btn btn-sm', href: `#/store/${enc(s.name)}/points`}, 'Points'),
          h('a', {class: 'btn btn-sm', href: `#/store/${enc(s.name)}/search`}, 'Search'),
          h('a', {class: 'btn btn-sm', href: `#/store/${enc(s.name)}/map`}, 'Map'),
          h('button', {type: 'button', class: 'btn btn-sm btn-ghost btn-danger-text', 'aria-label': `Drop store ${s.name}`,
            dataset: {action: 'drop', store: s.name},
            onclick: async () => { try { if (await dropStore(s.name)) render(); } catch { /* shown */ } }}, 'Drop')))))));
    fill(ctx.view, 
      pageHead('Stores', `${fmtInt(stores.length)} store${stores.length === 1 ? '' : 's'} · ${fmtInt(total)} points`,
        [refresh, create]),
      stores.length
        ? h('div', {class: 'panel flush'}, h('div', {class: 'table-wrap'}, table))
        : h('div', {class: 'panel hero-empty'}, table,
          h('h2', null, 'No stores yet'),
          h('p', {class: 'muted'}, 'A store holds points: an id, a vector and JSON metadata.'),
          h('a', {class: 'btn btn-primary', href: '#/stores/new'}, 'Create a store')));
    if (!stores.length) table.hidden = true;
  }

  // ---- create ----------------------------------------------------------------------------------------------

  function numberInput(id, attrs = {}) {
    return h('input', {type: 'number', id, name: id, inputmode: 'numeric', ...attrs});
  }

  async function pageCreate(ctx) {
    setTitle('New store');
    const name = h('input', {type: 'text', id: 'cs-name', required: true, pattern: '[A-Za-z0-9_\\-]{1,64}',
      maxlength: 64, autocomplete: 'off', spellcheck: 'false', placeholder: 'docs'});
    const dimension = numberInput('cs-dimension', {min: 1, max: 65536, placeholder: 'e.g. 384'});
    const metric = h('select', {id: 'cs-metric'}, options([['cosine', 'cosine (direction; text embeddings)'],
      ['euclidean', 'euclidean (L2)'], ['manhattan', 'manhattan (L1)'], ['dot', 'dot product']], 'cosine'));
    const index = h('select', {id: 'cs-index'}, options([['', 'server default'], ['flat', 'flat (exact)'],
      ['hnsw', 'hnsw (approximate graph)']], ''));
    const m = numberInput('cs-m', {min: 2, max: 128, placeholder: '16'});
    const efc = numberInput('cs-ef-construction', {min: 1, max: 100000, placeholder: '200'});
    const efs = numberInput('cs-ef-search', {min: 1, max: 100000, placeholder: '64'});
    const quant = h('select', {id: 'cs-quantization'}, options([['none', 'none (f32)'], ['sq8', 'sq8 (8-bit, 4× less memory)']], 'none'));
    const shards = numberInput('cs-shards', {min: 1, max: 1024, placeholder: '1'});
    const rf = numberInput('cs-replication-factor', {min: 1, max: 16, placeholder: '1'});
    const wc = numberInput('cs-write-consistency', {min: 0, max: 16, placeholder: '0 = majority'});
    const emb = h('input', {type: 'checkbox', id: 'cs-embedding'});
    const provider = h('select', {id: 'cs-embedding-provider'}, options([['local', 'local (in the server, no network)'],
      ['openai', 'openai (the server’s OpenAI-compatible endpoint)']], 'local'));
    const model = h('input', {type: 'text', id: 'cs-embedding-model', placeholder: 'all-MiniLM-L6-v2', spellcheck: 'false'});
    const stemmer = h('select', {id: 'cs-stemmer'}, options([['', 'none'], ...STEMMERS], ''));
    const stopLang = h('select', {id: 'cs-stop-words-language'}, options([['', 'none'], 'english'], ''));
    const stopWords = h('input', {type: 'text', id: 'cs-stop-words', placeholder: 'comma-separated, e.g. foo, bar',
      spellcheck: 'false'});
    const k1 = h('input', {type: 'number', id: 'cs-k1', min: 0, max: 100, step: 'any', placeholder: '1.2'});
    const b = h('input', {type: 'number', id: 'cs-b', min: 0, max: 1, step: 'any', placeholder: '0.75'});
    const preview = h('pre', {class: 'json', id: 'cs-preview'});
    const hnswSet = h('fieldset', {id: 'cs-hnsw'}, h('legend', null, 'HNSW graph'),
      h('div', {class: 'form-grid four'},
        field('Links per node (m)', m, 'More: better recall, more memory.'),
        field('ef_construction', efc, 'Beam width while building.'),
        field('ef_search', efs, 'Default beam width of a search.'),
        field('Quantization', quant, 'sq8 re-scores on full vectors.')));
    const embSet = h('div', {class: 'form-grid two', id: 'cs-embedding-fields'},
      field('Provider', provider), field('Model', model, 'Default: all-MiniLM-L6-v2 (384 dimensions).'));

    const body = () => {
      const out = {name: name.value.trim()};
      const int = el => (el.value === '' ? undefined : Number(el.value));
      if (dimension.value !== '') out.dimension = int(dimension);
      out.metric = metric.value;
      if (index.value) out.index = index.value;
      if (index.value === 'hnsw') {
        if (m.value !== '') out.m = int(m);
        if (efc.value !== '') out.ef_construction = int(efc);
        if (efs.value !== '') out.ef_search = int(efs);
        if (quant.value !== 'none') out.quantization = quant.value;
      }
      if (shards.value !== '') out.shards = int(shards);
      if (rf.value !== '') out.replication_factor = int(rf);
      if (wc.value !== '') out.write_consistency = int(wc);
      if (emb.checked) {
        out.embedding = {provider: provider.value};
        if (model.value.trim()) out.embedding.model = model.value.trim();
      }
      const ti = {};
      if (stemmer.value) ti.stemmer = stemmer.value;
      if (stopLang.value) ti.stop_words_language = stopLang.value;
      const words = stopWords.value.split(',').map(w => w.trim()).filter(Boolean);
      if (words.length) ti.stop_words = words;
      if (k1.value !== '') ti.k1 = Number(k1.value);
      if (b.value !== '') ti.b = Number(b.value);
      if (Object.keys(ti).length) out.text_index = ti;
      return out;
    };
    const sync = () => {
      hnswSet.disabled = index.value !== 'hnsw';
      embSet.hidden = !emb.checked;
      dimension.required = !emb.checked;
      preview.textContent = 'POST /v1/stores\n' + pretty(body());
    };
    const submit = h('button', {type: 'submit', class: 'btn btn-primary', id: 'cs-submit'}, 'Create store');
    const form = h('form', {id: 'create-store-form', class: 'create-layout', novalidate: true},
      h('div', {class: 'create-main'},
      h('div', {class: 'panel'}, h('h2', null, 'Basics'),
        h('div', {class: 'form-grid three'},
          field('Name', name, 'Letters, digits, “_” and “-”.'),
          field('Dimension', dimension, 'Numbers per vector. Not needed with an embedding model.'),
          field('Metric', metric, 'What “similar” means.'))),
      h('div', {class: 'panel'}, h('h2', null, 'Index'),
        h('div', {class: 'form-grid three'}, field('Index type', index, 'flat is exact, best below ~100k vectors.')),
        h('div', {class: 'spacer-12'}), hnswSet),
      h('div', {class: 'panel'}, h('h2', null, 'Distribution'),
        h('div', {class: 'form-grid three'},
          field('Shards', shards, 'Partitions spread over the storage nodes.'),
          field('Replication factor', rf, 'Copies of each shard on distinct nodes.'),
          field('Write consistency', wc, 'Replica acks a write waits for; 0 = a majority.'))),
      h('div', {class: 'panel'}, h('h2', null, 'Text'),
        h('label', {class: 'check', for: 'cs-embedding'}, emb, 'Bind an embedding model (the store then takes text: insert_texts, search_text)'),
        embSet,
        h('fieldset', {class: 'mt'}, h('legend', null, 'Keyword (BM25) index'),
          h('div', {class: 'form-grid three'},
            field('Stemmer', stemmer, 'Snowball: “running” matches “runs”.'),
            field('Stop-word list', stopLang),
            field('More stop words', stopWords),
            field('BM25 k1', k1, 'Term-frequency saturation (default 1.2).'),
            field('BM25 b', b, 'Length normalisation, 0 to 1 (default 0.75).')))),
      ),
      h('aside', {class: 'create-side', 'aria-label': 'Request'},
        h('div', {class: 'panel'}, h('h2', null, 'Request'),
          h('p', {class: 'small muted'}, 'What the console sends; empty fields are left out, so the server’s defaults apply.'),
          preview,
          h('div', {class: 'actions'}, h('a', {class: 'btn', href: '#/stores'}, 'Cancel'), submit))));
    form.addEventListener('input', sync);
    form.addEventListener('change', sync);
    form.addEventListener('submit', async ev => {
      ev.preventDefault();
      clearError();
      const req = body();
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(req.name)) {
        showError('The name must be 1 to 64 letters, digits, “_” or “-”.');
        name.focus();
        return;
      }
      if (req.dimension == null && !req.embedding) {
        showError('Give a dimension (or bind an embedding model, which has its own).');
        dimension.focus();
        return;
      }
      submit.disabled = true;
      try {
        const created = await api.post('/v1/stores', req);
        flash(`Store “${created.name}” created: ${created.dimension} dimensions, ${created.metric}, ${created.index}.`);
        location.hash = `#/store/${enc(created.name)}`;
      } catch { /* shown */ } finally { submit.disabled = false; }
    });
    sync();
    fill(ctx.view, pageHead('New store', 'Every option of POST /v1/stores; empty fields take the server’s defaults.',
      null, h('a', {href: '#/stores'}, 'Stores')), form);
    name.focus();
  }

  // ---- one store ------------------------------------------------------------------------------------------

  function storeTabs(name, tab) {
    const tabs = [['overview', 'Overview', ''], ['points', 'Points', '/points'], ['search', 'Search', '/search'],
      ['map', 'Map', '/map']];
    return h('nav', {class: 'tabs', 'aria-label': `Store ${name}`},
      tabs.map(([id, label, suffix]) => h('a', {href: `#/store/${enc(name)}${suffix}`, id: `tab-${id}`,
        'aria-current': id === tab ? 'page' : null}, label)));
  }

  async function pageStore(ctx, name, tab, query) {
    const stats = await api.get(`/v1/stores/${enc(name)}`);
    if (!ctx.alive()) return;
    const crumbs = [h('a', {href: '#/stores'}, 'Stores'), ' / '];
    const drop = h('button', {type: 'button', class: 'btn btn-danger-outline', id: 'drop-store', onclick: async () => {
      try { if (await dropStore(name)) location.hash = '#/stores'; } catch { /* shown */ }
    }}, 'Drop store');
    const backup = h('a', {class: 'btn', href: `#/backups`, id: 'store-backup',
      onclick: () => { state.backupStore = name; }}, 'Back up');
    const sub = `${fmtInt(stats.points)} points · ${stats.dimension} dimensions · ${stats.metric} · ${stats.index}`;
    const head = pageHead(name, sub, [backup, drop], crumbs);
    const content = h('div', {id: `store-${tab}`});
    fill(ctx.view, head, storeTabs(name, tab), content);
    if (tab === 'overview') { setTitle(name); return storeOverview(ctx, content, stats); }
    if (tab === 'points') { setTitle(`${name} · points`); return storePoints(ctx, content, stats); }
    if (tab === 'search') { setTitle(`${name} · search`); return storeSearch(ctx, content, stats); }
    if (tab === 'map') { setTitle(`${name} · map`); return storeMap(ctx, content, stats, query); }
    fill(content, h('div', {class: 'panel hero-empty'}, h('h2', null, 'No such tab')));
  }

  function card(label, value, small) {
    return h('div', {class: 'card'}, h('div', {class: 'label'}, label), h('div', {class: 'value' + (small ? ' small-value' : '')}, value));
  }

  function storeOverview(ctx, root, s) {
    const ti = s.text_index || {};
    const kv = (rows) => h('dl', {class: 'kv'}, rows.filter(Boolean).map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
    fill(root, 
      h('div', {class: 'cards'},
        card('Points', fmtInt(s.points)),
        card('Deleted', fmtInt(s.deleted_points)),
        card('Memory', fmtBytes(s.memory_bytes)),
        card('Per vector', fmtBytes(s.memory_bytes_per_vector)),
        card('Disk', fmtBytes(s.disk_bytes)),
        card('Index', h('span', null, s.index, ' ', s.index === 'hnsw'
          ? h('span', {class: `badge state-${s.index_status}`}, s.index_status) : null), true)),
      h('div', {class: 'grid-2'},
        h('section', {class: 'panel', 'aria-labelledby': 'cfg-h'}, h('h2', {id: 'cfg-h'}, 'Configuration'),
          kv([['Dimension', String(s.dimension)], ['Metric', s.metric], ['Index', s.index],
            ['Quantization', s.quantization], ['Shards', String(s.shards)],
            ['Replication factor', String(s.replication_factor)]])),
        h('section', {class: 'panel', 'aria-labelledby': 'txt-h'}, h('h2', {id: 'txt-h'}, 'Text'),
          kv([['Embedding model', s.embedding ? `${s.embedding.model} (${s.embedding.provider}, ${s.embedding.dimension} dimensions${s.embedding.normalized ? ', normalised' : ''})` : 'none'],
            ['Stemmer', ti.stemmer || 'none'], ['Stop words', [ti.stop_words_language, ...(ti.stop_words || [])].filter(Boolean).join(', ') || 'none'],
            ['BM25 k1 / b', `${ti.k1 ?? 1.2} / ${ti.b ?? 0.75}`]]))),
      h('div', {class: 'panel'}, h('div', {class: 'btn-group'},
        h('a', {class: 'btn btn-primary', href: `#/store/${enc(s.name)}/points`}, 'Browse points'),
        h('a', {class: 'btn', href: `#/store/${enc(s.name)}/search`}, 'Search'),
        h('a', {class: 'btn', href: `#/store/${enc(s.name)}/map`}, 'Open the map'))),
      h('details', {class: 'panel json-preview'}, h('summary', null, `GET /v1/stores/${s.name}`),
        h('pre', {class: 'json', id: 'store-describe'}, pretty(s))));
  }

  // ---- filters ----------------------------------------------------------------------------------------------

  /** The JSON of a filter textarea: undefined when empty; throws with a clear message when not an object. */
  function readFilter(textarea) {
    const t = textarea.value.trim();
    textarea.classList.remove('invalid');
    if (!t) return undefined;
    let v;
    try { v = JSON.parse(t); } catch (e) {
      textarea.classList.add('invalid');
      throw new Error(`The filter is not valid JSON: ${e.message}`);
    }
    if (!v || typeof v !== 'object' || Array.isArray(v)) {
      textarea.classList.add('invalid');
      throw new Error('The filter must be a JSON object like {"must": [{"key": "lang", "match": {"value": "en"}}]}');
    }
    return v;
  }

  function parseLoose(s) {
    const t = s.trim();
    if (/^(true|false|null)$/.test(t) || /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(t)) return JSON.parse(t);
    if (/^".*"$/.test(t)) { try { return JSON.parse(t); } catch { /* as is */ } }
    return s;
  }

  /** The key / operator / value helper that adds a condition to a filter textarea. */
  function filterHelper(prefix, textarea, onApply) {
    const key = h('input', {type: 'text', id: `${prefix}-key`, placeholder: 'key, e.g. lang', spellcheck: 'false',
      list: `${prefix}-keys`});
    const keys = h('datalist', {id: `${prefix}-keys`});
    const op = h('select', {id: `${prefix}-op`}, options([['eq', 'equals'], ['ne', 'does not equal'], ['any', 'is one of (a, b)'],
      ['gte', '≥'], ['lte', '≤'], ['exists', 'exists'], ['missing', 'is missing']], 'eq'));
    const value = h('input', {type: 'text', id: `${prefix}-value`, placeholder: 'value', spellcheck: 'false'});
    const add = h('button', {type: 'button', class: 'btn', id: `${prefix}-add`}, 'Add condition');
    op.addEventListener('change', () => { value.disabled = op.value === 'exists' || op.value === 'missing'; });
    add.addEventListener('click', () => {
      clearError();
      const k = key.value.trim();
      if (!k) { showError('Name the metadata key to filter on.'); key.focus(); return; }
      let f;
      try { f = readFilter(textarea) || {}; } catch (e) { showError(e.message); return; }
      const v = parseLoose(value.value);
      let clause = 'must';
      let cond;
      switch (op.value) {
        case 'eq': cond = {key: k, match: {value: v}}; break;
        case 'ne': cond = {key: k, match: {value: v}}; clause = 'must_not'; break;
        case 'any': cond = {key: k, match: {any: value.value.split(',').map(x => parseLoose(x.trim())).filter(x => x !== '')}}; break;
        case 'gte': cond = {key: k, range: {gte: Number(value.value)}}; break;
        case 'lte': cond = {key: k, range: {lte: Number(value.value)}}; break;
        case 'exists': cond = {key: k, exists: true}; break;
        default: cond = {key: k, exists: false};
      }
      if ((op.value === 'gte' || op.value === 'lte') && !Number.isFinite(Number(value.value))) {
        showError('A range needs a number.'); value.focus(); return;
      }
      (f[clause] = f[clause] || []).push(cond);
      textarea.value = oneLine(f);
      textarea.classList.remove('invalid');
      if (onApply) onApply();
    });
    return {
      el: h('div', {class: 'toolbar'}, field('Key', key, null, 'grow'), keys, field('Condition', op), field('Value', value, null, 'grow'),
        h('div', {class: 'field'}, add)),
      setKeys(list) { fill(keys, ...list.map(k => h('option', {value: k}))); },
    };
  }

  const FILTER_PLACEHOLDER = '{"must": [{"key": "lang", "match": {"value": "en"}}],\n "must_not": [{"key": "year", "range": {"lt": 2020}}]}';

  // ---- point browser ----------------------------------------------------------------------------------------

  function metaKeys(points, max) {
    const counts = new Map();
    for (const p of points) {
      if (p.metadata && typeof p.metadata === 'object') for (const k of Object.keys(p.metadata)) counts.set(k, (counts.get(k) || 0) + 1);
    }
    return Array.from(counts.entries()).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0])).slice(0, max).map(e => e[0]);
  }

  function metaCell(v) {
    if (v === undefined) return h('td', {class: 'muted'}, '—');
    if (typeof v === 'number') return h('td', {class: 'num'}, String(v));
    if (typeof v === 'string') return h('td', {class: 'text-cell', title: v.length > 60 ? v : null}, compact(v, 120));
    if (typeof v === 'boolean' || v === null) return h('td', {class: 'mono small'}, String(v));
    return h('td', {class: 'meta', title: compact(JSON.stringify(v), 2000)}, compact(v, 80));
  }

  /** Header cells of metadata columns, right-aligned where every value shown is a number. */
  function metaHeads(items, keys) {
    return keys.map(k => {
      const vals = items.map(p => (p.metadata ? p.metadata[k] : undefined)).filter(v => v !== undefined);
      return h('th', {scope: 'col', class: vals.length && vals.every(v => typeof v === 'number') ? 'num' : null}, k);
    });
  }

  function storePoints(ctx, root, stats) {
    const store = stats.name;
    const saved = state.pointsView[store] || {filter: '', limit: 50};
    const filterBox = h('textarea', {id: 'points-filter', rows: 2, spellcheck: 'false', placeholder: FILTER_PLACEHOLDER},
      saved.filter);
    const limit = h('select', {id: 'points-limit'}, options(['10', '25', '50', '100', '250'], String(saved.limit)));
    const apply = h('button', {type: 'submit', class: 'btn btn-primary', id: 'points-apply'}, 'Apply filter');
    const clear = h('button', {type: 'button', class: 'btn', id: 'points-clear'}, 'Clear');
    const helper = filterHelper('filter', filterBox);
    const count = h('span', {id: 'points-count', class: 'muted', 'aria-live': 'polite'});
    const tbody = h('tbody');
    const thead = h('thead');
    const table = h('table', {class: 'data', id: 'points-table'}, h('caption', {class: 'sr-only'}, `Points of ${store}`), thead, tbody);
    const prev = h('button', {type: 'button', class: 'btn btn-sm', id: 'points-prev'}, '← Previous');
    const next = h('button', {type: 'button', class: 'btn btn-sm', id: 'points-next'}, 'Next →');
    const pageLabel = h('span', {id: 'points-page', class: 'small muted'});
    const form = h('form', {id: 'points-filter-form', class: 'panel'},
      h('h2', null, 'Filter by metadata'),
      helper.el,
      h('div', {class: 'filter-row'},
        field('Filter (JSON)', filterBox, h('span', null, 'must / should / must_not with match {value | any}, range {gt, gte, lt, lte}, exists; dotted keys. ',
          h('a', {href: '#', id: 'filter-example', onclick: ev => { ev.preventDefault(); filterBox.value = FILTER_PLACEHOLDER; }}, 'Example'))),
        h('div', {class: 'filter-actions'}, field('Page size', limit), clear, apply)));
    fill(root, form,
      h('section', {class: 'panel flush', 'aria-labelledby': 'points-h'},
        h('div', {class: 'panel-head'}, h('h2', {id: 'points-h'}, 'Points'), count),
        h('div', {class: 'table-wrap'}, table),
        h('div', {class: 'pager'}, prev, pageLabel, next)));

    let cursors = [null];
    let page = 0;
    let filter;
    let busy = false;

    const load = async () => {
      if (busy) return;
      busy = true;
      prev.disabled = next.disabled = true;
      try {
        const body = {limit: Number(limit.value), with_metadata: true, with_vector: false};
        if (cursors[page]) body.cursor = cursors[page];
        if (filter) body.filter = filter;
        const countBody = filter ? {filter} : {};
        const [r, c] = await Promise.all([api.post(`/v1/stores/${enc(store)}/points/scroll`, body),
          page === 0 ? api.post(`/v1/stores/${enc(store)}/points/count`, countBody) : Promise.resolve(null)]);
        if (!ctx.alive()) return;
        if (c) {
          count.textContent = `${fmtInt(c.count)} ${filter ? 'matching ' : ''}point${c.count === 1 ? '' : 's'}`;
          count.dataset.count = String(c.count);
        }
        const pts = r.points || [];
        const keys = metaKeys(pts, 6);
        helper.setKeys(metaKeys(pts, 50));
        const extra = pts.some(p => p.metadata && Object.keys(p.metadata).some(k => !keys.includes(k)));
        fill(thead, h('tr', null, h('th', {scope: 'col'}, 'Id'),
          metaHeads(pts, keys), extra ? h('th', {scope: 'col'}, 'Other metadata') : null,
          h('th', {scope: 'col', class: 'num'}, 'Version')));
        fill(tbody, ...pts.map(p => h('tr', {dataset: {id: p.id}},
          h('td', null, h('button', {type: 'button', class: 'btn-link mono point-link', dataset: {id: p.id},
            onclick: () => openPoint(store, p.id).catch(() => {})}, p.id)),
          keys.map(k => metaCell(p.metadata ? p.metadata[k] : undefined)),
          extra ? metaCell(Object.fromEntries(Object.entries(p.metadata || {}).filter(([k]) => !keys.includes(k)))) : null,
          h('td', {class: 'num muted small'}, String(p.version)))));
        if (!pts.length) {
          fill(tbody, h('tr', null, h('td', {colspan: 3, class: 'empty'},
            h('strong', null, filter ? 'No point matches the filter' : 'No points'),
            filter ? 'Change or clear the filter.' : 'Insert points with PUT /v1/stores/' + store + '/points.')));
        }
        if (r.next_cursor) cursors[page + 1] = r.next_cursor; else cursors = cursors.slice(0, page + 1);
        const first = page * body.limit + 1;
        pageLabel.textContent = pts.length ? `Page ${page + 1} · rows ${fmtInt(first)}–${fmtInt(first + pts.length - 1)}` : `Page ${page + 1}`;
        pageLabel.dataset.page = String(page + 1);
        prev.disabled = page === 0;
        next.disabled = !r.next_cursor;
      } catch {
        prev.disabled = page === 0;
      } finally { busy = false; }
    };

    const restart = () => {
      clearError();
      try { filter = readFilter(filterBox); } catch (e) { showError(e.message); return; }
      state.pointsView[store] = {filter: filterBox.value, limit: Number(limit.value)};
      cursors = [null];
      page = 0;
      load();
    };
    form.addEventListener('submit', ev => { ev.preventDefault(); restart(); });
    clear.addEventListener('click', () => { filterBox.value = ''; restart(); });
    limit.addEventListener('change', restart);
    next.addEventListener('click', () => { if (cursors[page + 1]) { page++; load(); } });
    prev.addEventListener('click', () => { if (page > 0) { page--; load(); } });
    restart();
  }

  // ---- search -------------------------------------------------------------------------------------------------

  function storeSearch(ctx, root, stats) {
    const store = stats.name;
    const hasEmbedding = !!stats.embedding;
    const modeRadio = (value, label, disabled) => h('label', null,
      h('input', {type: 'radio', name: 'search-by', value, id: `search-by-${value}`, disabled}), label);
    const by = h('div', {class: 'segmented', role: 'radiogroup', 'aria-label': 'Query by'},
      modeRadio('vector', 'Vector'), modeRadio('id', 'A point’s vector'), modeRadio('text', 'Text'));
    const vector = h('textarea', {id: 'search-vector', rows: 3, spellcheck: 'false',
      placeholder: `[${Array.from({length: Math.min(stats.dimension, 4)}, (_, i) => (0.1 * (i + 1)).toFixed(1)).join(', ')}${stats.dimension > 4 ? ', …' : ''}]`});
    const random = h('button', {type: 'button', class: 'btn btn-sm', id: 'search-random'}, 'Random vector');
    const pid = h('input', {type: 'text', id: 'search-id', spellcheck: 'false', placeholder: 'a point id'});
    const text = h('input', {type: 'text', id: 'search-text', placeholder: 'what to look for, in words'});
    const textMode = h('select', {id: 'search-text-mode'}, options([['dense', 'dense (by meaning)'], ['keyword', 'keyword (BM25)'],
      ['hybrid', 'hybrid (both, fused)']], hasEmbedding ? 'dense' : 'keyword'));
    if (!hasEmbedding) for (const o of textMode.options) if (o.value !== 'keyword') o.disabled = true;
    const k = h('input', {type: 'number', id: 'search-k', min: 1, max: 10000, value: '10'});
    const ef = h('input', {type: 'number', id: 'search-ef', min: 1, max: 100000, placeholder: 'store default',
      disabled: stats.index !== 'hnsw'});
    const exact = h('input', {type: 'checkbox', id: 'search-exact', disabled: stats.index !== 'hnsw'});
    const threshold = h('input', {type: 'number', id: 'search-threshold', step: 'any', placeholder: 'none'});
    const filterBox = h('textarea', {id: 'search-filter', rows: 2, spellcheck: 'false', placeholder: FILTER_PLACEHOLDER});
    const submit = h('button', {type: 'submit', class: 'btn btn-primary', id: 'search-submit'}, 'Search');
    const vecPane = h('div', {id: 'q-vector'}, field(`Query vector (JSON array of ${stats.dimension} numbers)`, vector), h('div', {class: 'actions left'}, random));
    const idPane = h('div', {id: 'q-id'}, field('Point id', pid, 'Its stored vector is the query: the point itself comes first, at distance 0.'));
    const textPane = h('div', {id: 'q-text'}, h('div', {class: 'form-grid two'}, field('Query text', text), field('Mode', textMode,
      hasEmbedding ? `Embedded by ${stats.embedding.model}.` : 'This store has no embedding model: keyword (BM25) search over the points’ _text only.')));
    const form = h('form', {id: 'search-form', class: 'panel'},
      h('div', {class: 'panel-head'}, h('h2', null, 'Query'), by),
      vecPane, idPane, textPane,
      h('div', {class: 'spacer-12'}),
      h('div', {class: 'form-grid four'},
        field('Results (k)', k), field('ef (HNSW beam)', ef), field('Score threshold', threshold, 'Largest distance kept (lower is closer).'),
        h('div', {class: 'field'}, h('span', {class: 'label'}, 'Exact'), h('label', {class: 'check', for: 'search-exact'}, exact, 'Exact search (HNSW stores)')),
        field('Filter (JSON, optional)', filterBox, null, 'span-all')),
      h('div', {class: 'actions'}, submit));
    const summary = h('span', {id: 'search-summary', class: 'muted small', 'aria-live': 'polite'});
    const onMap = h('a', {class: 'btn btn-sm', id: 'search-on-map', href: `#/store/${enc(store)}/map`, hidden: true}, 'Show on the map');
    const results = h('div', {id: 'search-results-wrap', class: 'table-wrap'});
    fill(root, form, h('section', {class: 'panel flush', 'aria-labelledby': 'results-h'},
      h('div', {class: 'panel-head'}, h('h2', {id: 'results-h'}, 'Results'), h('div', {class: 'btn-group'}, summary, onMap)),
      results));

    const setMode = mode => {
      for (const r of $$('input[name="search-by"]', form)) r.checked = r.value === mode;
      vecPane.hidden = mode !== 'vector';
      idPane.hidden = mode !== 'id';
      textPane.hidden = mode !== 'text';
    };
    by.addEventListener('change', () => setMode($('input[name="search-by"]:checked', form).value));
    random.addEventListener('click', () => {
      const v = Array.from({length: stats.dimension}, () => Number((Math.random() * 2 - 1).toFixed(4)));
      vector.value = JSON.stringify(v);
    });

    const renderHits = (hits, isText) => {
      if (!hits.length) {
        fill(results, h('table', {class: 'data', id: 'search-results'}, h('tbody', null,
          h('tr', null, h('td', {class: 'empty'}, h('strong', null, 'No results'), 'Nothing matched (check the filter or the threshold).')))));
        return;
      }
      const keys = metaKeys(hits, 5);
      fill(results, h('table', {class: 'data', id: 'search-results'},
        h('caption', {class: 'sr-only'}, 'Search results, nearest first'),
        h('thead', null, h('tr', null, h('th', {scope: 'col', class: 'num col-rank'}, 'Rank'), h('th', {scope: 'col', class: 'col-id'}, 'Id'),
          h('th', {scope: 'col', class: 'num col-distance'}, 'Distance'),
          isText ? [h('th', {scope: 'col', class: 'num'}, 'BM25'), h('th', {scope: 'col', class: 'num'}, 'Score'), h('th', {scope: 'col'}, 'Sources'),
            h('th', {scope: 'col'}, 'Text')] : null,
          metaHeads(hits, keys))),
        h('tbody', null, hits.map((hit, i) => h('tr', {dataset: {id: hit.id}},
          h('td', {class: 'num'}, String(i + 1)),
          h('td', null, h('button', {type: 'button', class: 'btn-link mono point-link', dataset: {id: hit.id},
            onclick: () => openPoint(store, hit.id).catch(() => {})}, hit.id)),
          h('td', {class: 'num distance', dataset: {distance: hit.distance == null ? '' : String(hit.distance)}}, fmtDistance(hit.distance)),
          isText ? [h('td', {class: 'num'}, hit.bm25 == null ? '—' : hit.bm25.toFixed(3)),
            h('td', {class: 'num'}, hit.score == null ? '—' : hit.score.toFixed(4)),
            h('td', null, (hit.sources || []).map(s => h('span', {class: 'tag'}, s))),
            h('td', {class: 'text-cell', title: hit.text && hit.text.length > 60 ? hit.text : null}, hit.text == null ? '—' : compact(hit.text, 120))] : null,
          keys.map(key => metaCell(hit.metadata ? hit.metadata[key] : undefined)))))));
    };

    const run = async () => {
      clearError();
      const mode = $('input[name="search-by"]:checked', form).value;
      let filter;
      try { filter = readFilter(filterBox); } catch (e) { showError(e.message); filterBox.focus(); return; }
      const kk = Number(k.value) || 10;
      const opts = {k: kk, with_metadata: true, with_vector: kk <= 500};
      if (filter) opts.filter = filter;
      if (ef.value && !ef.disabled) opts.ef = Number(ef.value);
      if (exact.checked && !exact.disabled) opts.exact = true;
      if (threshold.value !== '') opts.score_threshold = Number(threshold.value);
      submit.disabled = true;
      summary.textContent = 'Searching…';
      const t0 = performance.now();
      try {
        let r;
        let query = null;
        let label;
        if (mode === 'text') {
          if (!text.value.trim()) { showError('Type what to look for.'); text.focus(); summary.textContent = ''; return; }
          r = await api.post(`/v1/stores/${enc(store)}/texts/search`, {query: text.value, mode: textMode.value, with_text: true, ...opts});
          label = `text “${compact(text.value, 40)}”`;
        } else {
          if (mode === 'id') {
            const id = pid.value.trim();
            if (!id) { showError('Give the id of a point.'); pid.focus(); summary.textContent = ''; return; }
            const p = await api.get(`/v1/stores/${enc(store)}/points/${enc(id)}?with_vector=true`);
            query = p.vector;
            label = `the vector of ${id}`;
          } else {
            let v;
            try { v = JSON.parse(vector.value); } catch (e) { showError(`The query vector is not valid JSON: ${e.message}`); vector.focus(); summary.textContent = ''; return; }
            if (!Array.isArray(v) || !v.every(x => typeof x === 'number')) { showError('The query vector must be a JSON array of numbers.'); summary.textContent = ''; return; }
            if (v.length !== stats.dimension) { showError(`The query vector has ${v.length} numbers; store “${store}” holds ${stats.dimension}.`); summary.textContent = ''; return; }
            query = v;
            label = 'a vector';
          }
          r = await api.post(`/v1/stores/${enc(store)}/search`, {vector: query, ...opts});
        }
        if (!ctx.alive()) return;
        const ms = performance.now() - t0;
        const hits = r.results || [];
        renderHits(hits, mode === 'text');
        summary.textContent = `${hits.length} result${hits.length === 1 ? '' : 's'} for ${label} in ${ms.toFixed(0)} ms`;
        state.search[store] = {label, query, hits: hits.map(x => ({id: x.id, distance: x.distance ?? x.score, vector: x.vector, metadata: x.metadata}))};
        onMap.hidden = false;
      } catch {
        summary.textContent = 'The search failed.';
      } finally { submit.disabled = false; }
    };
    form.addEventListener('submit', ev => { ev.preventDefault(); run(); });

    const pending = state.pendingSearch && state.pendingSearch.store === store ? state.pendingSearch : null;
    state.pendingSearch = null;
    if (pending) {
      setMode('id');
      pid.value = pending.id;
      run();
    } else {
      setMode('vector');
      const last = state.search[store];
      if (last) {
        summary.textContent = `Last search: ${last.label}`;
        onMap.hidden = false;
      }
      fill(results, h('div', {class: 'empty'}, h('strong', null, 'No search yet'),
        'Query by a vector, by a point’s vector, or by text.'));
    }
  }

  // ---- map ----------------------------------------------------------------------------------------------------

  function lerpColour(stops, t) {
    const x = Math.min(1, Math.max(0, t)) * (stops.length - 1);
    const i = Math.min(stops.length - 2, Math.floor(x));
    const f = x - i;
    const a = stops[i];
    const b = stops[i + 1];
    const p = (s, o) => parseInt(s.slice(o, o + 2), 16);
    const c = o => Math.round(p(a, o) + (p(b, o) - p(a, o)) * f).toString(16).padStart(2, '0');
    return '#' + c(1) + c(3) + c(5);
  }

  /** How the dots are coloured by metadata `key`: {kind, colourOf(i), legend}. */
  function colouring(points, key) {
    const n = points.length;
    if (!key) return {kind: 'none', colours: new Array(n).fill(PALETTE[0]), legend: []};
    const values = points.map(p => (p.metadata && typeof p.metadata === 'object' ? p.metadata[key] : undefined));
    const present = values.filter(v => v !== undefined && v !== null);
    const distinct = new Set(present.map(v => (typeof v === 'object' ? JSON.stringify(v) : v)));
    if (present.length && present.every(v => typeof v === 'number') && distinct.size > 12) {
      let min = Infinity;
      let max = -Infinity;
      for (const v of present) { if (v < min) min = v; if (v > max) max = v; }
      const span = max - min || 1;
      const colours = values.map(v => (typeof v === 'number' ? lerpColour(VIRIDIS, (v - min) / span) : MISSING_COLOUR));
      return {kind: 'numeric', colours, min, max, missing: n - present.length};
    }
    const counts = new Map();
    for (const v of present) {
      const s = typeof v === 'string' ? v : JSON.stringify(v);
      counts.set(s, (counts.get(s) || 0) + 1);
    }
    const top = Array.from(counts.entries()).sort((a, b) => b[1] - a[1] || String(a[0]).localeCompare(String(b[0])));
    // the most frequent values, in their natural order, so that colours stay put when the sample changes
    const shown = top.slice(0, PALETTE.length - (top.length > PALETTE.length ? 1 : 0))
      .sort((a, b) => String(a[0]).localeCompare(String(b[0]), undefined, {numeric: true}));
    const colourOf = new Map(shown.map(([v], i) => [v, PALETTE[i]]));
    const OTHER = '#7f7f7f';
    let other = 0;
    const colours = values.map(v => {
      if (v === undefined || v === null) return MISSING_COLOUR;
      const s = typeof v === 'string' ? v : JSON.stringify(v);
      const c = colourOf.get(s);
      if (c) return c;
      other++;
      return OTHER;
    });
    // values that name colours get those colours ("red" is not drawn blue)
    const named = shown.map(([v]) => NAMED_COLOURS[String(v).toLowerCase()]);
    if (shown.length && named.every(Boolean) && new Set(named).size === named.length) {
      shown.forEach(([v], i) => colourOf.set(v, named[i]));
      for (let i = 0; i < n; i++) {
        const v = values[i];
        if (v === undefined || v === null) continue;
        const c = colourOf.get(typeof v === 'string' ? v : JSON.stringify(v));
        if (c) colours[i] = c;
      }
    }
    const legend = shown.map(([v, c]) => ({label: v, colour: colourOf.get(v), count: c}));
    if (other) legend.push({label: `other (${top.length - shown.length} values)`, colour: OTHER, count: other});
    if (n - present.length) legend.push({label: 'missing', colour: MISSING_COLOUR, count: n - present.length});
    return {kind: 'categorical', colours, legend};
  }

  /** Places a vector on the map as the server's projection does. */
  function project(proj, v) {
    if (!v || v.length !== proj.mean.length) return null;
    let scale = 1;
    if (proj.normalized) {
      const norm = Math.sqrt(v.reduce((a, x) => a + x * x, 0));
      if (norm > 0) scale = 1 / norm;
    }
    let x = 0;
    let y = 0;
    const [c0, c1] = proj.components;
    for (let i = 0; i < v.length; i++) {
      const d = v[i] * scale - proj.mean[i];
      x += d * c0[i];
      y += d * c1[i];
    }
    return {x, y};
  }

  /** The map; the route may say `?limit=20000&color=lang` (kept in the address when changed here). */
  function storeMap(ctx, root, stats, routeQuery = new URLSearchParams()) {
    const store = stats.name;
    const canvas = h('canvas', {id: 'map-canvas', tabindex: '0', role: 'img',
      'aria-label': `2-D map of the points of store ${store}. Point at a dot to see it, click to open it; from the keyboard, arrows pan, plus and minus zoom, Enter opens the dot under the cross-hair.`});
    const overlay = h('canvas', {id: 'map-overlay', 'aria-hidden': 'true', class: 'map-overlay'});
    const tooltip = h('div', {class: 'tooltip', id: 'map-tooltip', hidden: true, role: 'tooltip'});
    const loading = h('div', {class: 'map-loading', id: 'map-loading'}, h('span', {class: 'spinner', 'aria-hidden': 'true'}), ' Sampling and projecting…');
    const zoomIn = h('button', {type: 'button', class: 'btn', id: 'map-zoom-in', 'aria-label': 'Zoom in'}, '+');
    const zoomOut = h('button', {type: 'button', class: 'btn', id: 'map-zoom-out', 'aria-label': 'Zoom out'}, '−');
    const reset = h('button', {type: 'button', class: 'btn', id: 'map-reset', 'aria-label': 'Reset the view'}, '⟲');
    const stage = h('div', {class: 'map-stage', id: 'map-stage'}, canvas, overlay, loading, tooltip,
      h('div', {class: 'map-controls'}, zoomIn, zoomOut, reset));
    const asked = Number(routeQuery.get('limit'));
    const limit = h('input', {type: 'number', id: 'map-limit', min: 1, max: MAP_MAX_LIMIT,
      value: String(asked >= 1 ? Math.min(MAP_MAX_LIMIT, Math.floor(asked)) : MAP_DEFAULT_LIMIT)});
    const filterBox = h('textarea', {id: 'map-filter', rows: 2, spellcheck: 'false', placeholder: '{"must": [{"key": "lang", "match": {"value": "en"}}]}'});
    const redraw = h('button', {type: 'submit', class: 'btn btn-primary', id: 'map-redraw'}, 'Draw');
    const status = h('p', {id: 'map-status', 'aria-live': 'polite', class: 'muted'}, 'Loading…');
    const colourSel = h('select', {id: 'map-color'}, h('option', {value: ''}, '(one colour)'));
    const legend = h('div', {class: 'map-legend', id: 'map-legend'});
    const showHits = h('input', {type: 'checkbox', id: 'map-show-hits', checked: true});
    const hitsPanel = h('div', {id: 'map-hits'});
    const form = h('form', {class: 'panel', id: 'map-form'}, h('h2', null, 'Sample'),
      field(`Points (at most ${fmtInt(MAP_MAX_LIMIT)})`, limit),
      h('div', {class: 'spacer-8'}),
      field('Filter (JSON, optional)', filterBox),
      h('div', {class: 'actions'}, redraw), status);
    const side = h('aside', {class: 'map-side', 'aria-label': 'Map settings'}, form,
      h('div', {class: 'panel'}, h('h2', null, 'Colour'), field('Colour by', colourSel), h('div', {class: 'spacer-8'}), legend),
      h('div', {class: 'panel'}, h('h2', null, 'Search results'), hitsPanel));
    fill(root, h('div', {class: 'map-layout'}, stage, side));
    overlay.style.position = 'absolute';
    overlay.style.left = '0';
    overlay.style.top = '0';
    overlay.style.pointerEvents = 'none';

    let data = null;          // the map response
    let colours = null;       // per point
    let sx = null;            // screen x / y per point (CSS px)
    let sy = null;
    let grid = new Map();     // spatial index: cell → indices
    const CELL = 12;
    let view = {k: 1, tx: 0, ty: 0};
    let base = null;          // fit: {cx, cy, s}
    let hover = -1;
    let kbd = false;          // focused from the keyboard: a cross-hair marks the centre
    let hits = [];            // projected search hits {id, x, y, rank}
    let query = null;         // projected query vector
    let W = 0;
    let H = 0;
    let dpr = 1;

    const css = name => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

    const sizeCanvases = () => {
      const r = stage.getBoundingClientRect();
      W = Math.max(100, Math.floor(r.width));
      H = Math.max(100, Math.floor(r.height));
      dpr = window.devicePixelRatio || 1;
      for (const c of [canvas, overlay]) {
        c.width = Math.round(W * dpr);
        c.height = Math.round(H * dpr);
        c.style.width = W + 'px';
        c.style.height = H + 'px';
      }
    };

    const fit = () => {
      const pts = data.points;
      let minX = Infinity; let maxX = -Infinity; let minY = Infinity; let maxY = -Infinity;
      const take = (x, y) => { if (x < minX) minX = x; if (x > maxX) maxX = x; if (y < minY) minY = y; if (y > maxY) maxY = y; };
      for (const p of pts) take(p.x, p.y);
      for (const q of hits) take(q.x, q.y);
      if (query) take(query.x, query.y);
      if (!Number.isFinite(minX)) { minX = -1; maxX = 1; minY = -1; maxY = 1; }
      const margin = 28;
      const dx = maxX - minX || 1;
      const dy = maxY - minY || 1;
      const s = Math.min((W - 2 * margin) / dx, (H - 2 * margin) / dy);
      base = {cx: (minX + maxX) / 2, cy: (minY + maxY) / 2, s};
    };

    const toScreen = (x, y) => [W / 2 + (x - base.cx) * base.s * view.k + view.tx, H / 2 - (y - base.cy) * base.s * view.k + view.ty];

    const radius = () => {
      const n = data ? data.points.length : 0;
      const r = n <= 1000 ? 3.4 : n <= 5000 ? 2.6 : n <= 12000 ? 2.0 : 1.6;
      return Math.min(7, r * Math.sqrt(view.k));
    };

    const draw = () => {
      if (!data) return 0;
      const g = canvas.getContext('2d');
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, W, H);
      // axes through the mean
      const [ox, oy] = toScreen(0, 0);
      g.strokeStyle = css('--chart-grid') || '#ddd';
      g.lineWidth = 1;
      g.beginPath();
      g.moveTo(0, Math.round(oy) + 0.5); g.lineTo(W, Math.round(oy) + 0.5);
      g.moveTo(Math.round(ox) + 0.5, 0); g.lineTo(Math.round(ox) + 0.5, H);
      g.stroke();
      g.fillStyle = css('--muted') || '#888';
      g.font = '11px system-ui, sans-serif';
      g.fillText('PC1 →', W - 44, Math.min(H - 6, Math.max(12, oy - 6)));
      g.fillText('PC2 ↑', Math.min(W - 40, Math.max(4, ox + 6)), 14);
      const pts = data.points;
      const n = pts.length;
      sx = new Float32Array(n);
      sy = new Float32Array(n);
      grid = new Map();
      const byColour = new Map();
      let first = -1;
      for (let i = 0; i < n; i++) {
        const [x, y] = toScreen(pts[i].x, pts[i].y);
        sx[i] = x;
        sy[i] = y;
        if (x < -10 || y < -10 || x > W + 10 || y > H + 10) continue;
        if (first < 0 && x > 0 && y > 0 && x < W && y < H) first = i;
        const key = Math.floor(x / CELL) * 100003 + Math.floor(y / CELL);
        let cell = grid.get(key);
        if (!cell) grid.set(key, (cell = []));
        cell.push(i);
        const c = colours[i];
        let list = byColour.get(c);
        if (!list) byColour.set(c, (list = []));
        list.push(i);
      }
      const r = radius();
      g.globalAlpha = n > 8000 ? 0.7 : 0.85;
      // missing (grey) first, so coloured dots stay on top
      const order = Array.from(byColour.keys()).sort((a, b) => (a === MISSING_COLOUR ? -1 : b === MISSING_COLOUR ? 1 : 0));
      for (const c of order) {
        g.fillStyle = c;
        g.beginPath();
        for (const i of byColour.get(c)) {
          g.moveTo(sx[i] + r, sy[i]);
          g.arc(sx[i], sy[i], r, 0, Math.PI * 2);
        }
        g.fill();
      }
      g.globalAlpha = 1;
      // where one dot is, for tests and for keyboard users' screen readers to start from
      if (first >= 0) canvas.dataset.firstDot = `${sx[first].toFixed(1)},${sy[first].toFixed(1)}`;
      drawOverlay();
      return n;
    };

    const star = (g, x, y, R) => {
      g.beginPath();
      for (let i = 0; i < 10; i++) {
        const a = -Math.PI / 2 + i * Math.PI / 5;
        const rr = i % 2 === 0 ? R : R * 0.45;
        const px = x + rr * Math.cos(a);
        const py = y + rr * Math.sin(a);
        if (i === 0) g.moveTo(px, py); else g.lineTo(px, py);
      }
      g.closePath();
    };

    const drawOverlay = () => {
      const g = overlay.getContext('2d');
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, W, H);
      if (!data) return;
      const ring = css('--text') || '#111';
      if (showHits.checked) {
        for (let j = hits.length - 1; j >= 0; j--) {
          const q = hits[j];
          const [x, y] = toScreen(q.x, q.y);
          g.lineWidth = 4;
          g.strokeStyle = css('--surface') || '#fff';
          g.beginPath(); g.arc(x, y, 7.5, 0, Math.PI * 2); g.stroke();
          g.lineWidth = 2.2;
          g.strokeStyle = j === 0 ? '#e11d48' : ring;
          g.beginPath(); g.arc(x, y, 7.5, 0, Math.PI * 2); g.stroke();
          if (j < 5) {
            g.font = 'bold 11px system-ui, sans-serif';
            g.fillStyle = ring;
            g.fillText(String(q.rank), x + 9, y - 7);
          }
        }
        if (query) {
          const [x, y] = toScreen(query.x, query.y);
          star(g, x, y, 11);
          g.fillStyle = '#f59e0b';
          g.fill();
          g.lineWidth = 1.5;
          g.strokeStyle = ring;
          g.stroke();
        }
      }
      if (kbd) {
        g.lineWidth = 1;
        g.strokeStyle = ring;
        g.beginPath();
        g.moveTo(W / 2 - 12, H / 2); g.lineTo(W / 2 - 4, H / 2); g.moveTo(W / 2 + 4, H / 2); g.lineTo(W / 2 + 12, H / 2);
        g.moveTo(W / 2, H / 2 - 12); g.lineTo(W / 2, H / 2 - 4); g.moveTo(W / 2, H / 2 + 4); g.lineTo(W / 2, H / 2 + 12);
        g.stroke();
      }
      if (hover >= 0) {
        g.lineWidth = 2;
        g.strokeStyle = ring;
        g.beginPath(); g.arc(sx[hover], sy[hover], radius() + 3, 0, Math.PI * 2); g.stroke();
      } else if (hover <= -2 && hits[-hover - 2]) {
        const [x, y] = toScreen(hits[-hover - 2].x, hits[-hover - 2].y);
        g.lineWidth = 2;
        g.strokeStyle = ring;
        g.beginPath(); g.arc(x, y, 11, 0, Math.PI * 2); g.stroke();
      }
    };

    // hover targets: i >= 0 is a dot of the sample, i <= -2 the search hit -i - 2 (often not in the sample)
    const itemOf = i => (i >= 0 ? data.points[i] : hits[-i - 2]);

    const nearest = (mx, my, reach = 1, within = 0) => {
      if (!sx) return -1;
      if (showHits.checked) {
        let bestHit = -1;
        let bestHitD = Math.max(9, within) ** 2;
        hits.forEach((q, j) => {
          const [x, y] = toScreen(q.x, q.y);
          const d = (x - mx) ** 2 + (y - my) ** 2;
          if (d <= bestHitD) { bestHitD = d; bestHit = j; }
        });
        if (bestHit >= 0) return -bestHit - 2;
      }
      const cx = Math.floor(mx / CELL);
      const cy = Math.floor(my / CELL);
      const maxD = Math.max(7, radius() + 3, within);
      let best = -1;
      let bestD = maxD * maxD;
      for (let i = cx - reach; i <= cx + reach; i++) {
        for (let j = cy - reach; j <= cy + reach; j++) {
          const cell = grid.get(i * 100003 + j);
          if (!cell) continue;
          for (const k of cell) {
            const d = (sx[k] - mx) ** 2 + (sy[k] - my) ** 2;
            if (d <= bestD) { bestD = d; best = k; }
          }
        }
      }
      return best;
    };

    const showTooltip = (i, mx, my) => {
      if (i === -1) { tooltip.hidden = true; return; }
      const p = itemOf(i);
      const hitRank = i >= 0 ? hits.findIndex(q => q.id === p.id) : -i - 2;
      const meta = p.metadata && typeof p.metadata === 'object' ? Object.entries(p.metadata) : [];
      fill(tooltip,
        h('div', {class: 'tt-id'}, p.id),
        hitRank >= 0 ? h('div', {class: 'tt-hit'}, `search hit #${hitRank + 1}`) : null,
        meta.length ? h('dl', {class: 'tt-meta'}, meta.slice(0, 10).map(([k, v]) => [h('dt', null, k), h('dd', null, compact(v, 80))]))
          : h('div', {class: 'muted small'}, 'no metadata'),
        meta.length > 10 ? h('div', {class: 'muted small'}, `… and ${meta.length - 10} more keys`) : null,
        h('div', {class: 'tt-hint'}, 'Click to open'));
      tooltip.hidden = false;
      const tw = tooltip.offsetWidth;
      const th = tooltip.offsetHeight;
      let x = mx + 14;
      let y = my + 14;
      if (x + tw > W - 4) x = Math.max(4, mx - tw - 14);
      if (y + th > H - 4) y = Math.max(4, my - th - 14);
      tooltip.style.left = x + 'px';
      tooltip.style.top = y + 'px';
    };

    const setHover = (i, mx, my) => {
      if (i !== hover) { hover = i; drawOverlay(); }
      showTooltip(i, mx, my);
      canvas.setAttribute('aria-description', i !== -1 ? `point ${itemOf(i).id}` : '');
    };

    const legendFor = col => {
      if (col.kind === 'numeric') {
        const bar = h('div', {class: 'gradient-bar'});
        bar.style.background = `linear-gradient(90deg, ${VIRIDIS.join(', ')})`;
        fill(legend, bar, h('div', {class: 'gradient-labels'}, h('span', null, String(+col.min.toPrecision(6))), h('span', null, String(+col.max.toPrecision(6)))),
          col.missing ? h('div', {class: 'row'}, swatch(MISSING_COLOUR), 'missing', h('span', {class: 'count'}, fmtInt(col.missing))) : null);
      } else if (col.kind === 'categorical') {
        fill(legend, ...col.legend.map(e => h('div', {class: 'row'}, swatch(e.colour), h('span', null, compact(e.label, 40)), h('span', {class: 'count'}, fmtInt(e.count)))));
      } else {
        fill(legend, h('p', {class: 'muted small'}, 'Pick a metadata key to colour the dots by.'));
      }
    };
    const swatch = c => { const s = h('span', {class: 'sw', 'aria-hidden': 'true'}); s.style.background = c; return s; };

    const applyColour = () => {
      const col = colouring(data.points, colourSel.value);
      colours = col.colours;
      legendFor(col);
    };

    const projectHits = () => {
      hits = [];
      query = null;
      const last = state.search[store];
      if (!last || !data) {
        fill(hitsPanel, h('p', {class: 'muted small'}, 'Run a search to highlight its results here. ',
          h('a', {href: `#/store/${enc(store)}/search`}, 'Search')));
        return;
      }
      const proj = data.projection;
      last.hits.forEach((hit, i) => {
        const xy = project(proj, hit.vector);
        if (xy) hits.push({id: hit.id, rank: i + 1, metadata: hit.metadata, ...xy});
      });
      if (last.query) query = project(proj, last.query);
      const sw = h('span', {class: 'sw ring', 'aria-hidden': 'true'});
      fill(hitsPanel, 
        h('label', {class: 'check', for: 'map-show-hits'}, showHits, `Highlight the results of ${last.label}`),
        h('div', {class: 'legend'}, h('span', null, sw, `${hits.length} hit${hits.length === 1 ? '' : 's'} (#1 in red)`),
          query ? h('span', null, '★ the query') : null),
        h('p', {class: 'small muted', id: 'map-hits-status', dataset: {hits: String(hits.length)}},
          hits.length < last.hits.length ? `${last.hits.length - hits.length} hit(s) without a vector are not shown.` : ''));
    };

    const load = async () => {
      clearError();
      let filter;
      try { filter = readFilter(filterBox); } catch (e) { showError(e.message); return; }
      const n = Math.min(MAP_MAX_LIMIT, Math.max(1, Number(limit.value) || MAP_DEFAULT_LIMIT));
      limit.value = String(n);
      const body = {limit: n, with_metadata: true};
      if (n !== MAP_DEFAULT_LIMIT || routeQuery.has('limit')) {
        routeQuery.set('limit', String(n));
        history.replaceState(null, '', `#/store/${enc(store)}/map?${routeQuery}`);
      }
      if (filter) body.filter = filter;
      loading.hidden = false;
      redraw.disabled = true;
      status.textContent = 'Sampling and projecting…';
      canvas.removeAttribute('data-dots');
      const t0 = performance.now();
      try {
        const r = await api.post(`/v1/stores/${enc(store)}/map`, body);
        if (!ctx.alive()) return;
        data = r;
        // colour keys from the sample
        const keys = metaKeys(r.points, 60).filter(k => k !== '_text');
        const prevKey = colourSel.value;
        fill(colourSel, h('option', {value: ''}, '(one colour)'), ...keys.map(k => h('option', {value: k}, k)));
        const wanted = routeQuery.get('color');
        let pick = keys.includes(prevKey) ? prevKey : wanted !== null && (wanted === '' || keys.includes(wanted)) ? wanted : '';
        const chosen = wanted !== null || keys.includes(prevKey);
        if (!pick && !chosen) {
          pick = keys.find(k => {
            const vals = new Set(r.points.slice(0, 2000).map(p => p.metadata && JSON.stringify(p.metadata[k])));
            return vals.size >= 2 && vals.size <= 12;
          }) || keys[0] || '';
        }
        colourSel.value = pick;
        applyColour();
        projectHits();
        view = {k: 1, tx: 0, ty: 0};
        sizeCanvases();
        fit();
        const dots = draw();
        const ms = performance.now() - t0;
        const ev = (r.projection && r.projection.explained_variance_ratio) || [0, 0];
        const method = ((r.projection && r.projection.method) || 'pca').toUpperCase();
        canvas.dataset.dots = String(dots);
        canvas.dataset.ms = String(Math.round(ms));
        status.textContent = `${fmtInt(r.sampled ?? dots)} of ${fmtInt(r.total)} points (${method}, ${(ev[0] * 100).toFixed(1)}% + ${(ev[1] * 100).toFixed(1)}% of variance) in ${fmtInt(ms)} ms`;
        status.dataset.state = 'done';
        if (!r.points.length) status.textContent = filter ? 'No point matches the filter.' : 'This store has no points yet.';
      } catch (e) {
        status.textContent = `The map could not be drawn: ${e.message}`;
        status.dataset.state = 'error';
      } finally {
        loading.hidden = true;
        redraw.disabled = false;
      }
    };

    // interaction
    let drag = null;
    canvas.addEventListener('pointerdown', ev => {
      drag = {x: ev.offsetX, y: ev.offsetY, tx: view.tx, ty: view.ty, moved: false};
      canvas.setPointerCapture(ev.pointerId);
    });
    canvas.addEventListener('pointermove', ev => {
      if (!data) return;
      if (drag) {
        const dx = ev.offsetX - drag.x;
        const dy = ev.offsetY - drag.y;
        if (!drag.moved && dx * dx + dy * dy > 16) { drag.moved = true; canvas.classList.add('panning'); tooltip.hidden = true; }
        if (drag.moved) { view.tx = drag.tx + dx; view.ty = drag.ty + dy; hover = -1; draw(); return; }
      }
      setHover(nearest(ev.offsetX, ev.offsetY), ev.offsetX, ev.offsetY);
    });
    canvas.addEventListener('pointerup', ev => {
      const wasDrag = drag && drag.moved;
      drag = null;
      canvas.classList.remove('panning');
      if (wasDrag || !data) return;
      const i = nearest(ev.offsetX, ev.offsetY);
      if (i !== -1) openPoint(store, itemOf(i).id).catch(() => {});
    });
    canvas.addEventListener('pointerleave', () => { if (!drag) setHover(-1, 0, 0); });
    const zoomAt = (factor, mx, my) => {
      const k2 = Math.min(200, Math.max(0.2, view.k * factor));
      const f = k2 / view.k;
      view.tx = mx - W / 2 - (mx - W / 2 - view.tx) * f;
      view.ty = my - H / 2 - (my - H / 2 - view.ty) * f;
      view.k = k2;
      hover = -1;
      tooltip.hidden = true;
      draw();
    };
    canvas.addEventListener('wheel', ev => {
      if (!data) return;
      ev.preventDefault();
      zoomAt(Math.exp(-ev.deltaY * 0.0015), ev.offsetX, ev.offsetY);
    }, {passive: false});
    zoomIn.addEventListener('click', () => data && zoomAt(1.5, W / 2, H / 2));
    zoomOut.addEventListener('click', () => data && zoomAt(1 / 1.5, W / 2, H / 2));
    reset.addEventListener('click', () => { if (data) { view = {k: 1, tx: 0, ty: 0}; draw(); } });
    // keyboard: arrows pan, + / - zoom, 0 resets; the dot nearest the centre (cross-hair) is shown, Enter opens it
    const pickCentre = () => { if (kbd && data) setHover(nearest(W / 2, H / 2, 2, 24), W / 2, H / 2); };
    canvas.addEventListener('keydown', ev => {
      if (!data) return;
      const step = 40;
      const keys = {ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step]};
      kbd = true;
      if (keys[ev.key]) { view.tx += keys[ev.key][0]; view.ty += keys[ev.key][1]; draw(); ev.preventDefault(); }
      else if (ev.key === '+' || ev.key === '=') { zoomAt(1.5, W / 2, H / 2); ev.preventDefault(); }
      else if (ev.key === '-') { zoomAt(1 / 1.5, W / 2, H / 2); ev.preventDefault(); }
      else if (ev.key === '0') { view = {k: 1, tx: 0, ty: 0}; draw(); ev.preventDefault(); }
      else if (ev.key === 'Enter' && hover !== -1) { openPoint(store, itemOf(hover).id).catch(() => {}); ev.preventDefault(); return; }
      else return;
      pickCentre();
    });
    canvas.addEventListener('focus', () => { kbd = canvas.matches(':focus-visible'); drawOverlay(); pickCentre(); });
    canvas.addEventListener('blur', () => { kbd = false; setHover(-1, 0, 0); drawOverlay(); });
    colourSel.addEventListener('change', () => {
      routeQuery.set('color', colourSel.value);
      history.replaceState(null, '', `#/store/${enc(store)}/map?${routeQuery}`);
      if (data) { applyColour(); draw(); }
    });
    showHits.addEventListener('change', () => drawOverlay());
    form.addEventListener('submit', ev => { ev.preventDefault(); load(); });

    const ro = new ResizeObserver(() => {
      if (!data) return;
      const r = stage.getBoundingClientRect();
      if (Math.floor(r.width) === W && Math.floor(r.height) === H) return;
      sizeCanvases();
      fit();
      draw();
    });
    ro.observe(stage);
    onCleanup(() => ro.disconnect());
    load();
  }

  // ------------------------------------------------------------------------------------------------------------
  // Backups

  function setJob(job, stateName, text, value, max) {
    job.hidden = false;
    if (stateName === 'progress') {
      job.dataset.progressEvents = String(Number(job.dataset.progressEvents || 0) + 1);
      stateName = 'running';
    } else if (stateName === 'start') {
      job.dataset.progressEvents = '0';
      stateName = 'running';
    }
    job.dataset.state = stateName;
    const bar = $('progress', job);
    const label = $('span', job);
    if (max != null) bar.max = max;
    if (value == null) bar.removeAttribute('value'); else bar.value = value;
    label.textContent = text;
  }

  async function pageBackups(ctx) {
    setTitle('Backups');
    const [list, stores] = await Promise.all([api.get('/v1/backups'), loadStores()]);
    if (!ctx.alive()) return;
    const preselect = state.backupStore;
    state.backupStore = null;
    const storeSel = h('select', {id: 'backup-store', required: true},
      stores.length ? stores.map(s => h('option', {value: s.name, selected: s.name === preselect}, `${s.name} (${fmtInt(s.points)} points)`))
        : h('option', {value: ''}, 'no stores'));
    const name = h('input', {type: 'text', id: 'backup-name', spellcheck: 'false', autocomplete: 'off',
      placeholder: 'default: <store>-<time>', pattern: '[A-Za-z0-9_\\-][A-Za-z0-9_.\\-]{0,127}'});
    const submit = h('button', {type: 'submit', class: 'btn btn-primary', id: 'backup-submit', disabled: !stores.length}, 'Back up');
    const job = h('div', {class: 'job', id: 'backup-job', hidden: true, dataset: {state: 'idle'}},
      h('progress', {id: 'backup-progress', max: 1}), h('span', {id: 'backup-progress-text', class: 'small', 'aria-live': 'polite'}));
    const form = h('form', {id: 'backup-form', class: 'panel'}, h('h2', null, 'Create a backup'),
      h('p', {class: 'muted small'}, 'Consistent while writes go on; checksummed and compressed. Progress comes from MCP’s backup_store.'),
      h('div', {class: 'form-grid three'}, field('Store', storeSel), field('Backup name (optional)', name),
        h('div', {class: 'field'}, h('span', {class: 'label', 'aria-hidden': 'true'}, '\u00a0'), submit)),
      job);
    const tableWrap = h('div', {class: 'table-wrap'});
    fill(ctx.view, pageHead('Backups', `${fmtInt(list.backups.length)} backup${list.backups.length === 1 ? '' : 's'}`,
      [h('button', {type: 'button', class: 'btn', onclick: () => render()}, 'Refresh')]),
    form, h('section', {class: 'panel flush', 'aria-labelledby': 'backups-h'},
      h('div', {class: 'panel-head'}, h('h2', {id: 'backups-h'}, 'Backups')), tableWrap));

    const renderTable = (backups, highlight) => {
      const sorted = backups.slice().sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
      fill(tableWrap, h('table', {class: 'data', id: 'backups-table'},
        h('caption', {class: 'sr-only'}, 'Backups, newest first'),
        h('thead', null, h('tr', null, h('th', {scope: 'col'}, 'Name'), h('th', {scope: 'col'}, 'Store'),
          h('th', {scope: 'col', class: 'num'}, 'Points'), h('th', {scope: 'col', class: 'num'}, 'Size'),
          h('th', {scope: 'col'}, 'Created'), h('th', {scope: 'col'}, 'rvdb'), h('th', {scope: 'col'}, h('span', {class: 'sr-only'}, 'Actions')))),
        h('tbody', null, sorted.length ? sorted.map(b => h('tr', {dataset: {backup: b.name}, class: b.name === highlight ? 'selected' : null},
          h('th', {scope: 'row', class: 'mono'}, b.name),
          h('td', null, h('a', {href: `#/store/${enc(b.store)}`}, b.store)),
          h('td', {class: 'num', dataset: {points: String(b.points)}}, fmtInt(b.points)),
          h('td', {class: 'num'}, fmtBytes(b.bytes)),
          h('td', {class: 'nowrap'}, fmtDate(b.created_at)),
          h('td', {class: 'small muted'}, b.rvdb_version),
          h('td', {class: 'right nowrap'}, h('div', {class: 'btn-group'},
            h('button', {type: 'button', class: 'btn btn-sm', dataset: {action: 'restore', backup: b.name},
              onclick: () => openRestore(b)}, 'Restore…'),
            h('button', {type: 'button', class: 'btn btn-sm btn-ghost btn-danger-text', dataset: {action: 'delete', backup: b.name},
              'aria-label': `Delete backup ${b.name}`, onclick: () => deleteBackup(b)}, 'Delete')))))
          : h('tr', null, h('td', {colspan: 7, class: 'empty'}, h('strong', null, 'No backups yet'), 'Back up a store above.')))));
    };
    renderTable(list.backups);

    const refresh = async highlight => {
      const l = await api.get('/v1/backups');
      if (!ctx.alive()) return;
      renderTable(l.backups, highlight);
      $('#page-sub').textContent = `${fmtInt(l.backups.length)} backup${l.backups.length === 1 ? '' : 's'}`;
    };

    const deleteBackup = async b => {
      const yes = await confirmDialog({title: `Delete backup “${b.name}”?`,
        message: `The backup of store “${b.store}” (${fmtInt(b.points)} points, ${fmtBytes(b.bytes)}) is deleted from the server's disk.`,
        confirmText: 'Delete backup'});
      if (!yes) return;
      try {
        await api.del(`/v1/backups/${enc(b.name)}`);
        flash(`Backup “${b.name}” deleted.`);
        await refresh();
      } catch { /* shown */ }
    };

    form.addEventListener('submit', async ev => {
      ev.preventDefault();
      clearError();
      const store = storeSel.value;
      if (!store) return;
      const args = {store};
      if (name.value.trim()) args.name = name.value.trim();
      const expected = (stores.find(s => s.name === store) || {}).points || 0;
      submit.disabled = true;
      const t0 = performance.now();
      setJob(job, 'start', `Backing up “${store}”…`, expected ? 0 : null, Math.max(1, expected));
      try {
        const info = await withFallback(
          () => mcpTool('backup_store', args, p => {
            const done = p.progress || 0;
            const total = p.total || expected;
            setJob(job, 'progress', `Backing up “${store}”: ${fmtInt(done)}${total ? ` of ${p.total ? '' : '~'}${fmtInt(total)}` : ''} points`, total ? Math.min(done, total) : null, Math.max(1, total));
          }),
          () => api.post(`/v1/stores/${enc(store)}/backups`, args.name ? {name: args.name} : {}, {quiet: true}));
        const secs = ((performance.now() - t0) / 1000).toFixed(1);
        setJob(job, 'done', `Done: backup “${info.name}” of “${info.store}”, ${fmtInt(info.points)} points, ${fmtBytes(info.bytes)}, in ${secs} s.`, 1, 1);
        name.value = '';
        await refresh(info.name);
      } catch (e) {
        setJob(job, 'error', `The backup failed: ${e.message}`, 0, 1);
        if (!e.shown) showError(e.message);
      } finally { submit.disabled = false; }
    });

    // restore dialog
    const dialog = $('#restore-dialog');
    const rForm = $('#restore-form');
    const rStore = $('#restore-store');
    const rShards = $('#restore-shards');
    const rJob = $('#restore-job');
    const rSubmit = $('#restore-submit');
    let current = null;
    const openRestore = b => {
      current = b;
      $('#restore-backup').textContent = `${b.name} (store ${b.store}, ${fmtInt(b.points)} points)`;
      const names = new Set(state.stores.map(s => s.name));
      let candidate = `${b.store}-restored`.slice(0, 64);
      for (let i = 2; names.has(candidate); i++) candidate = `${b.store}-restored-${i}`.slice(0, 64);
      rStore.value = candidate;
      rShards.value = '';
      rJob.hidden = true;
      rJob.dataset.state = 'idle';
      rSubmit.disabled = false;
      rSubmit.hidden = false;
      $('#restore-cancel').textContent = 'Cancel';
      dialog.showModal();
      rStore.select();
    };
    const onRestore = async ev => {
      ev.preventDefault();
      if (!current) return;
      clearError();
      const target = rStore.value.trim();
      if (!/^[A-Za-z0-9_-]{1,64}$/.test(target)) { setJob(rJob, 'error', 'The new store’s name must be 1 to 64 letters, digits, “_” or “-”.', 0, 1); rStore.focus(); return; }
      const args = {backup: current.name, store: target};
      if (rShards.value) args.shards = Number(rShards.value);
      rSubmit.disabled = true;
      const t0 = performance.now();
      setJob(rJob, 'start', `Restoring into “${target}”…`, 0, Math.max(1, current.points));
      try {
        const info = await withFallback(
          () => mcpTool('restore_store', args, p => {
            const total = p.total || current.points;
            setJob(rJob, 'progress', `Restoring: ${fmtInt(p.progress)} of ${fmtInt(total)} points`, Math.min(p.progress, total), Math.max(1, total));
          }),
          () => api.post(`/v1/backups/${enc(args.backup)}/restore`, {store: target, ...(args.shards ? {shards: args.shards} : {})}, {quiet: true}));
        const secs = ((performance.now() - t0) / 1000).toFixed(1);
        setJob(rJob, 'done', `Done: ${fmtInt(info.points)} points restored into store “${info.store}” (${info.shards} shard${info.shards === 1 ? '' : 's'}) in ${secs} s.`, 1, 1);
        rSubmit.hidden = true;
        $('#restore-cancel').textContent = 'Close';
        flash(`Backup “${current.name}” restored into store “${info.store}”.`);
        loadStores().catch(() => {});
      } catch (e) {
        setJob(rJob, 'error', `The restore failed: ${e.message}`, 0, 1);
        rSubmit.disabled = false;
      }
    };
    const close = () => dialog.close();
    rForm.addEventListener('submit', onRestore);
    $('#restore-cancel').addEventListener('click', close);
    $('#restore-close').addEventListener('click', close);
    onCleanup(() => {
      rForm.removeEventListener('submit', onRestore);
      $('#restore-cancel').removeEventListener('click', close);
      $('#restore-close').removeEventListener('click', close);
      if (dialog.open) dialog.close();
    });
  }

  /** MCP first (it reports progress); REST when MCP itself cannot be reached (not when the tool failed). */
  async function withFallback(viaMcp, viaRest) {
    try {
      return await viaMcp();
    } catch (e) {
      const transport = e instanceof ApiError && (e.status === 404 || e.status === 405 || e.status === 406 || e.code === 'bad_response')
        || e instanceof TypeError;
      if (!transport) throw e;
      return viaRest();
    }
  }

  // ------------------------------------------------------------------------------------------------------------
  // Cluster

  async function pageCluster(ctx) {
    setTitle('Cluster');
    const cards = h('div', {class: 'cards', id: 'cluster-cards'});
    const nodesWrap = h('div', {class: 'table-wrap'});
    const storesWrap = h('div', {id: 'cluster-stores'});
    const transfers = h('div', {id: 'cluster-transfers'});
    const updated = h('span', {class: 'small muted', id: 'cluster-updated', 'aria-live': 'off'});
    fill(ctx.view, 
      pageHead('Cluster', 'Storage nodes, their states, and where every shard’s replicas live. Refreshed every 2 s.', [updated]),
      cards,
      h('section', {class: 'panel flush', 'aria-labelledby': 'nodes-h'}, h('div', {class: 'panel-head'}, h('h2', {id: 'nodes-h'}, 'Nodes')), nodesWrap),
      h('section', {class: 'panel', 'aria-labelledby': 'placement-h'}, h('h2', {id: 'placement-h'}, 'Shard placement'),
        h('p', {class: 'small muted'}, 'One row per shard, one cell per replica (first = preferred for reads), coloured by its node’s state.'),
        storesWrap),
      h('section', {class: 'panel', 'aria-labelledby': 'transfers-h'}, h('h2', {id: 'transfers-h'}, 'Shard transfers'), transfers));

    const stateBadge = s => h('span', {class: `badge state-${s || 'unknown'}`}, (s || 'unknown').replace('_', ' '));
    const update = async () => {
      const c = await api.get('/v1/cluster');
      if (!ctx.alive()) return;
      const nodes = c.nodes || [];
      const stores = c.stores || [];
      const replicasOn = new Map();
      for (const s of stores) for (const sh of s.shards || []) for (const r of sh.replicas || []) replicasOn.set(r.node_id, (replicasOn.get(r.node_id) || 0) + 1);
      const up = nodes.filter(n => n.state === 'up').length;
      fill(cards, card('Nodes up', `${up} / ${nodes.length}`), card('Stores', fmtInt(stores.length)),
        card('Routing version', fmtInt(c.version)), card('Cluster id', h('span', {class: 'mono break', title: c.cluster_id || ''}, c.cluster_id || '—'), true));
      fill(nodesWrap, h('table', {class: 'data', id: 'cluster-nodes'},
        h('caption', {class: 'sr-only'}, 'Storage nodes'),
        h('thead', null, h('tr', null, h('th', {scope: 'col'}, 'Node'), h('th', {scope: 'col'}, 'Address'),
          h('th', {scope: 'col'}, 'State'), h('th', {scope: 'col'}, 'Last heartbeat'), h('th', {scope: 'col', class: 'num'}, 'Replicas'))),
        h('tbody', null, nodes.length ? nodes.map(n => h('tr', {dataset: {node: n.node_id, state: n.state}},
          h('th', {scope: 'row', class: 'mono'}, n.node_id), h('td', {class: 'mono small'}, n.address),
          h('td', null, stateBadge(n.state)), h('td', {class: 'small'}, fmtAgo(n.last_heartbeat_unix_ms)),
          h('td', {class: 'num'}, fmtInt(replicasOn.get(n.node_id) || 0))))
          : h('tr', null, h('td', {colspan: 5, class: 'empty'}, 'No storage node has registered.')))));
      fill(storesWrap, ...(stores.length ? stores.map(s => {
        const rf = Math.max(1, ...(s.shards || []).map(sh => (sh.replicas || []).length));
        return h('div', {class: 'cluster-store', dataset: {store: s.name}},
          h('h3', null, h('a', {href: `#/store/${enc(s.name)}`}, s.name), h('span', {class: 'muted small'}, ` · ${(s.shards || []).length} shard${(s.shards || []).length === 1 ? '' : 's'} × ${s.replication_factor ?? rf} replica${(s.replication_factor ?? rf) === 1 ? '' : 's'}`)),
          s.resharding ? h('p', {class: 'small', dataset: {resharding: s.resharding.phase}},
            `Resharding ${s.resharding.from_shards} → ${s.resharding.to_shards} shards: ${s.resharding.phase}, ${s.resharding.copies_done} of ${s.resharding.copies_total} copies done, ${fmtInt(s.resharding.records_copied)} records (since ${fmtAgo(s.resharding.started_unix_ms)})`) : null,
          h('div', {class: 'table-wrap'}, h('table', {class: 'shard-grid'},
            h('thead', null, h('tr', null, h('th', {scope: 'col'}, 'Shard'), h('th', {scope: 'col'}, 'Epoch'),
              Array.from({length: rf}, (_, i) => h('th', {scope: 'col'}, `Replica ${i + 1}`)))),
            h('tbody', null, (s.shards || []).map(sh => h('tr', null,
              h('th', {scope: 'row'}, String(sh.shard)), h('td', {class: 'small muted'}, String(sh.epoch)),
              Array.from({length: rf}, (_, i) => {
                const r = (sh.replicas || [])[i];
                return r ? h('td', {class: `replica state-${r.state}`, title: `node ${r.node_id}: ${r.state}${i === 0 ? ' (preferred for reads)' : ''}`},
                  r.node_id, h('span', {class: 'sr-only'}, ` (${r.state})`)) : h('td', {class: 'replica state-none'}, '—');
            })))))));
      }) : [h('p', {class: 'muted'}, 'No stores.')]));
      const t = c.transfers || [];
      fill(transfers, t.length
        ? h('table', {class: 'data', id: 'transfers-table'}, h('thead', null, h('tr', null, Object.keys(t[0]).map(k => h('th', {scope: 'col'}, k)))),
          h('tbody', null, t.map(x => h('tr', null, Object.keys(t[0]).map(k => h('td', null, compact(x[k], 80)))))))
        : h('p', {class: 'muted', id: 'no-transfers'}, 'No shard transfers in progress.'));
      updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    };
    await update();
    every(POLL_MS, update);
  }

  // ------------------------------------------------------------------------------------------------------------
  // Metrics: Prometheus text → rates and latencies → canvas charts

  function parseProm(text) {
    const out = [];
    for (const line of text.split('\n')) {
      if (!line || line[0] === '#') continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      if (m[2]) {
        const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
        let l;
        while ((l = re.exec(m[2]))) labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
      }
      const v = m[3] === '+Inf' ? Infinity : m[3] === '-Inf' ? -Infinity : Number(m[3]);
      out.push({name: m[1], labels, value: v});
    }
    return out;
  }

  /** The gateway's request counters and latency histograms, keyed for deltas. */
  function digest(samples) {
    const counters = new Map();   // key → {surface, operation, outcome, value}
    const buckets = new Map();    // `${surface}|${operation}|${le}` → value
    const sums = new Map();       // `${surface}|${operation}` → value
    const counts = new Map();
    const gauges = {};
    for (const s of samples) {
      const L = s.labels;
      if (s.name === 'rvdb_gateway_requests_total') {
        counters.set(`${L.surface}|${L.operation}|${L.store}|${L.outcome}`, {surface: L.surface, operation: L.operation, outcome: L.outcome, value: s.value});
      } else if (s.name === 'rvdb_gateway_request_duration_seconds_bucket') {
        buckets.set(`${L.surface}|${L.operation}|${L.le}`, s.value);
      } else if (s.name === 'rvdb_gateway_request_duration_seconds_sum') {
        sums.set(`${L.surface}|${L.operation}`, s.value);
      } else if (s.name === 'rvdb_gateway_request_duration_seconds_count') {
        counts.set(`${L.surface}|${L.operation}`, s.value);
      } else if (s.name === 'process_resident_memory_bytes' || s.name === 'process_start_time_seconds'
        || s.name === 'process_cpu_seconds_total' || s.name === 'process_open_fds') {
        gauges[s.name] = s.value;
      }
    }
    return {counters, buckets, sums, counts, gauges};
  }

  const delta = (now, before) => (before == null || now < before ? now : now - before);

  /** p-quantile from cumulative bucket counts [{le, count}] sorted by le (linear within the bucket). */
  function quantile(cum, total, q) {
    if (!total) return null;
    const want = q * total;
    let prevLe = 0;
    let prevCount = 0;
    for (const {le, count} of cum) {
      if (count >= want) {
        if (!Number.isFinite(le)) return prevLe;
        const inBucket = count - prevCount;
        return inBucket > 0 ? prevLe + (le - prevLe) * ((want - prevCount) / inBucket) : le;
      }
      prevLe = le;
      prevCount = count;
    }
    return prevLe;
  }

  function newHistory() {
    return {samples: [], stores: new Map(), prev: null, prevT: 0, ops: [], gauges: {}};
  }

  function ingest(hist, text, t) {
    const d = digest(parseProm(text));
    const prev = hist.prev;
    hist.gauges = d.gauges;
    if (prev) {
      const dt = (t - hist.prevT) / 1000;
      let total = 0; let rest = 0; let mcp = 0; let errors = 0;
      const opCount = new Map();
      for (const [k, c] of d.counters) {
        const p = prev.counters.get(k);
        const dv = delta(c.value, p && p.value);
        total += dv;
        if (c.surface === 'rest') rest += dv;
        if (c.surface === 'mcp') mcp += dv;
        if (c.outcome !== 'ok') errors += dv;
        const ok = `${c.surface}|${c.operation}`;
        opCount.set(ok, (opCount.get(ok) || 0) + dv);
      }
      // latency over the interval, all operations together
      const byLe = new Map();
      const opBuckets = new Map();
      for (const [k, v] of d.buckets) {
        const i = k.lastIndexOf('|');
        const le = k.slice(i + 1) === '+Inf' ? Infinity : Number(k.slice(i + 1));
        const dv = delta(v, prev.buckets.get(k));
        byLe.set(le, (byLe.get(le) || 0) + dv);
        const op = k.slice(0, i);
        if (!opBuckets.has(op)) opBuckets.set(op, []);
        opBuckets.get(op).push({le, count: v});
      }
      let dSum = 0; let dCount = 0;
      for (const [k, v] of d.counts) { dCount += delta(v, prev.counts.get(k)); dSum += delta(d.sums.get(k) || 0, prev.sums.get(k)); }
      const cum = Array.from(byLe.entries()).map(([le, count]) => ({le, count})).sort((a, b) => a.le - b.le);
      hist.samples.push({t, total: total / dt, rest: rest / dt, mcp: mcp / dt, errors: errors / dt,
        mean: dCount ? dSum / dCount : null, p95: quantile(cum, dCount, 0.95), p50: quantile(cum, dCount, 0.5)});
      // per-operation table: totals since start, rate over the last interval
      hist.ops = Array.from(d.counts.entries()).map(([k, count]) => {
        const [surface, operation] = k.split('|');
        const b = (opBuckets.get(k) || []).sort((x, y) => x.le - y.le);
        return {surface, operation, count, rate: (opCount.get(k) || 0) / dt, mean: count ? (d.sums.get(k) || 0) / count : null,
          p95: quantile(b, count, 0.95)};
      }).sort((a, b) => b.count - a.count);
    }
    hist.prev = d;
    hist.prevT = t;
    const cut = t - HISTORY_MS - POLL_MS;
    while (hist.samples.length && hist.samples[0].t < cut) hist.samples.shift();
    for (const [, arr] of hist.stores) while (arr.length && arr[0][0] < cut) arr.shift();
  }

  function niceStep(range, ticks) {
    const raw = range / ticks;
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / p;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * p;
  }

  /** A line chart over the last five minutes: series [{name, colour, points: [[t, v|null]]}]. */
  function drawChart(canvas, series, {now, span = HISTORY_MS, yFormat, yLabel, minMax = 1}) {
    const rect = canvas.getBoundingClientRect();
    const W = Math.max(200, Math.floor(rect.width));
    const H = Math.max(120, Math.floor(rect.height));
    const dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
      canvas.width = Math.round(W * dpr);
      canvas.height = Math.round(H * dpr);
    }
    const g = canvas.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, W, H);
    const cs = getComputedStyle(document.documentElement);
    const gridC = cs.getPropertyValue('--chart-grid').trim() || '#ddd';
    const textC = cs.getPropertyValue('--muted').trim() || '#666';
    const L = 64; const R = 12; const T = 10; const B = 26;
    const t0 = now - span;
    let max = 0;
    for (const s of series) for (const [t, v] of s.points) if (t >= t0 && v != null && v > max) max = v;
    const step = niceStep(Math.max(max * 1.15, minMax), 4);
    const top = Math.max(step, Math.ceil((max * 1.15 || minMax) / step) * step);
    const X = t => L + ((t - t0) / span) * (W - L - R);
    const Y = v => T + (1 - v / top) * (H - T - B);
    g.font = '11px system-ui, sans-serif';
    g.lineWidth = 1;
    g.strokeStyle = gridC;
    g.fillStyle = textC;
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (let v = 0; v <= top + step / 2; v += step) {
      const y = Math.round(Y(v)) + 0.5;
      g.beginPath(); g.moveTo(L, y); g.lineTo(W - R, y); g.stroke();
      g.fillText(yFormat(v), L - 6, y);
    }
    g.textAlign = 'center';
    g.textBaseline = 'top';
    const tick = [10000, 15000, 30000, 60000].find(t => span / t <= 6) || 60000;
    for (let a = Math.floor(span / tick) * tick; a >= 0; a -= tick) {
      const x = X(now - a);
      g.beginPath(); g.moveTo(Math.round(x) + 0.5, T); g.lineTo(Math.round(x) + 0.5, H - B); g.stroke();
      const label = a === 0 ? 'now' : a % 60000 === 0 ? `−${a / 60000} min` : `−${a / 1000} s`;
      g.fillText(label, Math.min(W - R - 12, Math.max(L + 14, x)), H - B + 6);
    }
    g.save();
    g.translate(12, T + (H - T - B) / 2);
    g.rotate(-Math.PI / 2);
    g.textAlign = 'center';
    g.textBaseline = 'middle';
    g.fillText(yLabel, 0, 0);
    g.restore();
    g.save();
    g.beginPath(); g.rect(L, T - 2, W - L - R, H - T - B + 4); g.clip();
    series.forEach((s, si) => {
      // runs of samples without a gap (a missed scrape or a store that was not there)
      const runs = [];
      let run = [];
      let prevT = null;
      for (const [t, v] of s.points) {
        if (v == null || (prevT != null && t - prevT > POLL_MS * 3)) { if (run.length) runs.push(run); run = []; }
        if (v != null) run.push([X(t), Y(v)]);
        prevT = t;
      }
      if (run.length) runs.push(run);
      g.strokeStyle = s.colour;
      g.fillStyle = s.colour;
      g.lineWidth = si === 0 ? 2.2 : 1.6;
      g.lineJoin = 'round';
      for (const r of runs) {
        g.beginPath();
        if (r.length === 1) {
          g.arc(r[0][0], r[0][1], 2.5, 0, Math.PI * 2);
          g.fill();
          continue;
        }
        r.forEach(([x, y], i) => (i ? g.lineTo(x, y) : g.moveTo(x, y)));
        g.stroke();
      }
    });
    g.restore();
    const any = series.some(s => s.points.some(([, v]) => v != null));
    if (!any) {
      g.fillStyle = textC;
      g.textAlign = 'center';
      g.textBaseline = 'middle';
      g.font = '13px system-ui, sans-serif';
      g.fillText('Collecting samples…', L + (W - L - R) / 2, T + (H - T - B) / 2);
    }
  }

  function chartLegend(el, series, fmt) {
    fill(el, ...series.map(s => {
      const sw = h('span', {class: 'sw', 'aria-hidden': 'true'});
      sw.style.background = s.colour;
      const last = s.points.length ? s.points[s.points.length - 1][1] : null;
      return h('span', {class: 'legend-item'}, sw, `${s.name}: ${last == null ? '—' : fmt(last)}`);
    }));
  }

  async function pageMetrics(ctx) {
    setTitle('Metrics');
    if (!state.metrics) state.metrics = newHistory();
    const hist = state.metrics;
    const cards = h('div', {class: 'cards', id: 'metrics-cards'});
    const chart = (id, title, desc) => {
      const canvas = h('canvas', {id, role: 'img', 'aria-label': title});
      const legend = h('div', {class: 'legend', id: `${id}-legend`});
      return {canvas, legend, el: h('section', {class: 'panel chart-panel', 'aria-labelledby': `${id}-h`},
        h('div', {class: 'panel-head'}, h('h2', {id: `${id}-h`}, title), h('span', {class: 'small muted'}, desc)), canvas, legend)};
    };
    const rate = chart('chart-rate', 'Request rate', 'requests per second, from rvdb_gateway_requests_total');
    const lat = chart('chart-latency', 'Latency', 'mean and p95, from rvdb_gateway_request_duration_seconds');
    const pts = chart('chart-points', 'Points per store', 'live points, from GET /v1/stores');
    const opsWrap = h('div', {class: 'table-wrap'});
    const note = h('p', {class: 'small muted'}, `Scraped from GET /metrics every ${POLL_MS / 1000} s (this page’s own polling of /v1/stores counts as 0.5 requests per second). Up to the last five minutes; the history is kept while the tab is open.`);
    fill(ctx.view, pageHead('Metrics', 'Live from the gateway’s Prometheus endpoint.'), cards,
      h('div', {class: 'grid-2'}, rate.el, lat.el), pts.el,
      h('section', {class: 'panel flush', 'aria-labelledby': 'ops-h'}, h('div', {class: 'panel-head'}, h('h2', {id: 'ops-h'}, 'Operations since the server started')), opsWrap),
      note);

    const drawAll = () => {
      const now = Date.now();
      const S = hist.samples;
      // the window grows with the history, from one minute to five
      const first = Math.min(S.length ? S[0].t : now, ...Array.from(hist.stores.values()).map(a => (a.length ? a[0][0] : now)));
      const span = Math.min(HISTORY_MS, Math.max(60000, Math.ceil((now - first) / 60000) * 60000));
      const rateSeries = [
        {name: 'all', colour: SERIES_COLOURS[0], points: S.map(s => [s.t, s.total])},
        {name: 'REST', colour: SERIES_COLOURS[1], points: S.map(s => [s.t, s.rest])},
        {name: 'MCP', colour: SERIES_COLOURS[2], points: S.map(s => [s.t, s.mcp])},
        {name: 'errors', colour: SERIES_COLOURS[3], points: S.map(s => [s.t, s.errors])},
      ];
      const fmtRate = v => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + '/s';
      drawChart(rate.canvas, rateSeries, {now, span, yFormat: v => fmtRate(v).replace('/s', ''), yLabel: 'requests / s', minMax: 1});
      chartLegend(rate.legend, rateSeries, fmtRate);
      const ms = v => (v == null ? null : v * 1000);
      const latSeries = [
        {name: 'mean', colour: SERIES_COLOURS[0], points: S.map(s => [s.t, ms(s.mean)])},
        {name: 'p95', colour: SERIES_COLOURS[2], points: S.map(s => [s.t, ms(s.p95)])},
      ];
      const fmtMs = v => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)) + ' ms';
      drawChart(lat.canvas, latSeries, {now, span, yFormat: v => fmtMs(v).replace(' ms', ''), yLabel: 'milliseconds', minMax: 1});
      chartLegend(lat.legend, latSeries, fmtMs);
      const stores = Array.from(hist.stores.entries())
        .map(([name, arr]) => ({name, arr, last: arr.length ? arr[arr.length - 1][1] : 0}))
        .sort((a, b) => b.last - a.last).slice(0, SERIES_COLOURS.length);
      const pSeries = stores.map((s, i) => ({name: s.name, colour: SERIES_COLOURS[i], points: s.arr}));
      drawChart(pts.canvas, pSeries, {now, span, yFormat: v => (v >= 1e6 ? (v / 1e6).toFixed(1) + 'M' : v >= 1e3 ? (v / 1e3).toFixed(v >= 1e4 ? 0 : 1) + 'k' : String(v)), yLabel: 'points', minMax: 10});
      chartLegend(pts.legend, pSeries, v => fmtInt(v));
      const last = S[S.length - 1];
      const g = hist.gauges;
      fill(cards, 
        card('Requests / s', last ? fmtRate(last.total) : '—'),
        card('Errors / s', last ? fmtRate(last.errors) : '—'),
        card('Mean latency', last && last.mean != null ? fmtSeconds(last.mean) : '—'),
        card('p95 latency', last && last.p95 != null ? fmtSeconds(last.p95) : '—'),
        card('Memory (RSS)', g.process_resident_memory_bytes != null ? fmtBytes(g.process_resident_memory_bytes) : '—'),
        card('Up for', g.process_start_time_seconds ? fmtUptime(Date.now() / 1000 - g.process_start_time_seconds) : '—'));
      fill(opsWrap, h('table', {class: 'data', id: 'ops-table'},
        h('thead', null, h('tr', null, h('th', {scope: 'col'}, 'Surface'), h('th', {scope: 'col'}, 'Operation'),
          h('th', {scope: 'col', class: 'num'}, 'Requests'), h('th', {scope: 'col', class: 'num'}, 'Now (req/s)'),
          h('th', {scope: 'col', class: 'num'}, 'Mean'), h('th', {scope: 'col', class: 'num'}, 'p95'))),
        h('tbody', null, hist.ops.length ? hist.ops.slice(0, 20).map(o => h('tr', null, h('td', null, o.surface),
          h('td', {class: 'mono small'}, o.operation), h('td', {class: 'num'}, fmtInt(o.count)), h('td', {class: 'num'}, o.rate.toFixed(2)),
          h('td', {class: 'num'}, fmtSeconds(o.mean)), h('td', {class: 'num'}, fmtSeconds(o.p95))))
          : h('tr', null, h('td', {colspan: 6, class: 'empty'}, 'Waiting for the second scrape…')))));
    };

    const poll = async () => {
      const [text, stores] = await Promise.all([api.get('/metrics', {raw: true}), api.get('/v1/stores')]);
      if (!ctx.alive()) return;
      const t = Date.now();
      ingest(hist, text, t);
      const seen = new Set();
      for (const s of stores.stores || []) {
        seen.add(s.name);
        if (!hist.stores.has(s.name)) hist.stores.set(s.name, []);
        hist.stores.get(s.name).push([t, s.points]);
      }
      for (const [name, arr] of hist.stores) if (!seen.has(name)) arr.push([t, null]);
      drawAll();
    };
    drawAll();
    await poll();
    every(POLL_MS, poll);
    const ro = new ResizeObserver(() => drawAll());
    ro.observe(rate.canvas);
    onCleanup(() => ro.disconnect());
  }

  function fmtUptime(s) {
    if (s < 120) return `${Math.round(s)} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
    return `${(s / 86400).toFixed(1)} days`;
  }

  // ------------------------------------------------------------------------------------------------------------
  // Start

  function init() {
    updateKeyUi();
    $('#alert-close').addEventListener('click', clearError);
    $('#skip-link').addEventListener('click', () => $('#main').focus());
    $('#signin-form').addEventListener('submit', ev => {
      ev.preventDefault();
      const key = $('#signin-key').value.trim();
      if (!key) return;
      state.key = key;
      sessionStorage.setItem(KEY_STORAGE, key);
      state.mcp = null;
      updateKeyUi();
      hideSignIn();
      render();
    });
    $('#signout').addEventListener('click', () => {
      state.key = '';
      sessionStorage.removeItem(KEY_STORAGE);
      state.mcp = null;
      updateKeyUi();
      flash('Signed out: the API key is forgotten.');
      render();
    });
    const pd = $('#point-dialog');
    $('#point-close').addEventListener('click', () => pd.close());
    $('#point-similar').addEventListener('click', () => {
      if (!pointDialogCtx) return;
      state.pendingSearch = {store: pointDialogCtx.store, id: pointDialogCtx.id};
      pd.close();
      const target = `#/store/${enc(pointDialogCtx.store)}/search`;
      if (location.hash === target) render(); else location.hash = target;
    });
    // a click on a dialog's backdrop closes it
    for (const d of $$('dialog')) {
      d.addEventListener('click', ev => { if (ev.target === d) d.close(); });
    }
    window.addEventListener('hashchange', () => {
      for (const d of $$('dialog')) if (d.open) d.close();
      render();
    });
    api.get('/openapi.json', {quiet: true}).then(doc => {
      const v = doc && doc.info && doc.info.version;
      if (v) $('#server-info').textContent = `rvdb ${v}`;
    }).catch(() => {});
    if (!location.hash) history.replaceState(null, '', '#/stores');
    render();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init);
  else init();
})();
