// Spectra console: vanilla JS over the JSON API, inline SVG charts, hash routing.
// Rule: every value from the API (names, descriptions, tags, ids, master data) goes
// into markup through esc() (or textContent), never raw; numbers through num()/fmt.
// The page's Content-Security-Policy allows scripts from this origin only.
"use strict";

const $ = (sel) => document.querySelector(sel);
const main = $("#main");
const state = { segmentations: [], current: null };

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
const fmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const fmt1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const pct = (x) => fmt1.format(100 * (x || 0)) + "%";
const num = (x) => fmt.format(x || 0);
// A driver of a move: a feature's share before and lately (`p` formats the shares).
const driver = (d, p = pct) => `${esc(d.feature)} ${p(d.earlier_share)} → ${p(d.recent_share)}${d.reading === "lines" ? " of lines" : ""}`;
// A number to `digits` decimals, or a dash where there is none.
const fixed = (digits) => (x) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));

function toast(msg) {
  const t = $("#toast");
  t.textContent = msg;
  t.classList.add("show");
  setTimeout(() => t.classList.remove("show"), 2600);
}

// The API token (publish.api_token, or publish.read_token when reads need one) lives
// in this tab's sessionStorage only: never localStorage, so it is gone with the tab.
localStorage.removeItem("spectra.token"); // left there by older consoles
const TOKEN_KEY = "spectra.token";
function token(ask, why = "API token (publish.api_token) for editing names and tags:") {
  if (ask) {
    const t = prompt(why, "");
    if (t !== null) sessionStorage.setItem(TOKEN_KEY, t.trim());
  }
  return sessionStorage.getItem(TOKEN_KEY) || "";
}
function authHeaders(headers = {}) {
  const t = token(false);
  return t ? { ...headers, authorization: `Bearer ${t}` } : headers;
}

async function fetchOk(path, opts = {}, retried = false) {
  const r = await fetch(path, { ...opts, headers: authHeaders(opts.headers) });
  // Reads need a token when publish.read_token is set: ask once, then retry.
  if (r.status === 401 && !retried && (opts.method || "GET") === "GET") {
    token(true, "API token (publish.read_token or publish.api_token) for reading segments:");
    return fetchOk(path, opts, true);
  }
  if (!r.ok) {
    const body = r.headers.get("content-type")?.includes("json") ? await r.json() : await r.text();
    const e = new Error(body && body.error ? body.error : `HTTP ${r.status}`);
    e.status = r.status;
    throw e;
  }
  return r;
}

async function api(path, opts = {}) {
  const r = await fetchOk(path, opts);
  return r.headers.get("content-type")?.includes("json") ? r.json() : r.text();
}

// Export links: a plain link cannot carry the token, so with one set the file is
// fetched with it and saved from a blob.
async function download(a) {
  const r = await fetchOk(a.getAttribute("href"));
  const url = URL.createObjectURL(await r.blob());
  const save = document.createElement("a");
  save.href = url;
  save.download = a.getAttribute("download") || "";
  document.body.append(save);
  save.click();
  save.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
document.addEventListener("click", (e) => {
  const a = e.target.closest && e.target.closest("a[data-export]");
  if (!a || !token(false)) return;
  e.preventDefault();
  download(a).catch((err) => toast(err.message));
});

// Index colour: blue below average, neutral at 100, orange above (log scale, ±2 octaves).
function indexColor(index) {
  const t = Math.max(-1, Math.min(1, Math.log2(Math.max(index, 1) / 100) / 2));
  const neutral = [241, 243, 245], hi = [232, 89, 12], lo = [28, 126, 214];
  const to = t >= 0 ? hi : lo, a = Math.abs(t);
  const c = neutral.map((n, i) => Math.round(n + (to[i] - n) * a));
  return `rgb(${c.join(",")})`;
}
function idxClass(i) { return i >= 120 ? "idx hi" : i <= 80 ? "idx lo" : "idx"; }

// The DNA strip: one cell per feature (width ∝ the average share), coloured by index.
function dnaStrip(spectrum, height = 34) {
  const feats = [...spectrum].sort((a, b) => b.average - a.average || a.feature.localeCompare(b.feature));
  const total = feats.reduce((s, f) => s + Math.max(f.average, 0.004), 0) || 1;
  let x = 0;
  const cells = feats.map((f) => {
    const w = (Math.max(f.average, 0.004) / total) * 1000;
    const cell = `<rect x="${x.toFixed(2)}" y="0" width="${w.toFixed(2)}" height="${height}" fill="${indexColor(f.index)}"><title>${esc(f.feature)}: ${pct(f.share)} of spend (avg ${pct(f.average)}), index ${fmt.format(f.index)}</title></rect>`;
    x += w;
    return cell;
  });
  return `<svg class="dna" viewBox="0 0 1000 ${height}" preserveAspectRatio="none" role="img" aria-label="spectrum">${cells.join("")}</svg>`;
}

// Horizontal bars: segment share against the average, with the index.
function shareBars(rows, { label = "feature", limit = 15 } = {}) {
  const top = rows.slice(0, limit);
  const max = Math.max(...top.map((r) => Math.max(r.share, r.average)), 0.0001);
  return `<table><thead><tr><th>${esc(label)}</th><th>share vs average</th><th class="num">share</th><th class="num">index</th></tr></thead><tbody>${top
    .map((r) => `<tr><td>${r.name ? `${esc(r.name)} <span class="muted">${esc(r.feature)}</span>` : esc(r.feature ?? r.value)}</td><td style="width:45%">
      <div class="bar" style="width:${(100 * r.share) / max}%"></div><div class="bar avg" style="width:${(100 * r.average) / max}%;margin-top:2px"></div></td>
      <td class="num">${pct(r.share)}</td><td class="num"><span class="${idxClass(r.index)}">${fmt.format(r.index)}</span></td></tr>`)
    .join("")}</tbody></table>`;
}

function tags(list) {
  return (list || []).map((t) => `<span class="tag">${esc(t)}</span>`).join("");
}

const legend = `<div class="legend">below average <span class="scale"></span> above average (index 100 = all outlets)</div>`;

async function loadSegmentations() {
  state.segmentations = await api("/api/segmentations");
  const sel = $("#segmentation");
  const saved = localStorage.getItem("spectra.segmentation");
  sel.innerHTML = state.segmentations.map((s) => `<option value="${esc(s.name)}">${esc(s.name)}${s.held ? " (held)" : ""}</option>`).join("");
  const names = state.segmentations.map((s) => s.name);
  state.current = names.includes(saved) ? saved : names.find((n) => state.segmentations.find((s) => s.name === n).latest) || names[0] || null;
  if (state.current) sel.value = state.current;
  sel.onchange = () => { state.current = sel.value; localStorage.setItem("spectra.segmentation", sel.value); route(); };
}

function noRun() {
  return `<div class="card empty">No segmentation has a run yet. Run <code>spectra segment</code>, then reload.</div>`;
}

async function viewSegments() {
  if (!state.current) return (main.innerHTML = noRun());
  const segs = await api(`/api/segmentations/${encodeURIComponent(state.current)}/segments`);
  const info = state.segmentations.find((s) => s.name === state.current) || {};
  main.innerHTML = `${heldBanner(info)}<div class="page-head"><div><h1>${esc(state.current)}</h1>
    <span class="muted">${segs.length} segments · ${num(info.outlets)} outlets · run ${esc(info.latest?.run_id)}${info.level ? " · level " + esc(info.level) : ""}</span></div>
    <div style="display:flex;gap:12px;align-items:center">${legend}
    <a data-export href="/api/segmentations/${encodeURIComponent(state.current)}/export.csv" download="${esc(state.current)}.csv">CSV</a>
    <a data-export href="/api/segmentations/${encodeURIComponent(state.current)}/export.xlsx" download="${esc(state.current)}.xlsx">XLSX</a></div></div>
    <div class="grid" id="segments">${segs.map(segmentCard).join("")}</div>`;
  const release = $("#release-btn");
  if (release) release.onclick = () => releaseRun(state.current, info.held.run);
}

// A run the circuit breaker holds: what it would change, and the Release button (token).
function heldBanner(info) {
  const h = info.held;
  if (!h) return "";
  return `<div class="card held" id="held"><h2>Run ${esc(h.run_id)} is held, not published</h2>
    <p>${num(h.moved)} moved and ${num(h.left)} tombstoned of ${num(h.baseline_outlets)} outlets (${pct(h.change_share)} &gt; ${pct(h.max_change_share)}).
    Still published: ${esc(h.baseline?.run_id)}. ${esc(h.reason)}</p>
    <button type="button" id="release-btn">Release</button> <span class="muted">Publishes the held run; needs the API token.</span></div>`;
}

async function releaseRun(name, run, retried = false) {
  try {
    await api(`/api/segmentations/${encodeURIComponent(name)}/runs/${encodeURIComponent(run)}/release`, {
      method: "POST", headers: { authorization: `Bearer ${token(false)}` },
    });
    toast("Released; the run is being published");
    await loadSegmentations();
    viewSegments();
  } catch (e) {
    if (e.status === 401 && !retried) { token(true); return releaseRun(name, run, true); }
    toast(e.message);
  }
}

function segmentCard(s) {
  const over = s.spectrum.filter((f) => f.index >= 120 && f.share > 0.01).slice(0, 4);
  const patterns = (s.patterns || []).slice(0, 3).map((p) => esc(p.name || p.feature || "pattern")).join(" · ");
  return `<article class="card segment-card" data-segment="${esc(s.segment_id)}">
    <h2><a href="#/segment/${encodeURIComponent(s.segment_id)}">${esc(s.name)}</a> <span class="badge">${esc(s.segment_id)}</span></h2>
    <div>${tags(s.tags)}</div>
    ${s.description ? `<p class="muted" style="margin:4px 0">${esc(s.description)}</p>` : ""}
    <div class="stats"><div class="stat"><b>${num(s.outlets)}</b><span>outlets (${pct(s.outlet_share)})</span></div>
      <div class="stat"><b>${pct(s.value_share)}</b><span>of value</span></div>
      <div class="stat"><b>${num(s.kpis?.avg_outlet_value)}</b><span>value per outlet</span></div>
      <div class="stat"><b>${fmt1.format(s.kpis?.invoices_per_month || 0)}</b><span>invoices / month</span></div></div>
    ${dnaStrip(s.spectrum)}
    <div class="features">${over.length ? "Over-indexed: " + over.map((f) => `<b>${esc(f.feature)}</b> ${fmt.format(f.index)}`).join(", ") : "Close to the average mix"}</div>
    ${patterns ? `<div class="features">Patterns: ${patterns}</div>` : ""}
  </article>`;
}

async function viewSegment(id, sort) {
  const name = state.current;
  const by = sort === "potential" ? "tier" : "value";
  const [s, outlets, trends] = await Promise.all([
    api(`/api/segmentations/${encodeURIComponent(name)}/segments/${encodeURIComponent(id)}`),
    api(`/api/segmentations/${encodeURIComponent(name)}/segments/${encodeURIComponent(id)}/outlets?limit=25&sort=${by}`),
    api(`/api/segmentations/${encodeURIComponent(name)}/trends?runs=60`).catch(() => null),
  ]);
  const fit = [...s.penetration].sort((a, b) => b.share - a.share);
  main.innerHTML = `<div class="crumbs"><a href="#/segments">← all segments</a></div>
  <div class="page-head"><div><h1>${esc(s.name)} <span class="badge">${esc(s.segment_id)}</span></h1><div>${tags(s.tags)}</div>
    <span class="muted">${num(s.outlets)} outlets · ${pct(s.value_share)} of value · ${esc(s.run_id)}</span></div>${legend}</div>
  <div class="card">${dnaStrip(s.spectrum, 44)}</div>
  <div class="two" style="margin-top:16px">
    <div class="card"><h2>Spectrum: share of wallet</h2>${shareBars(s.spectrum)}</div>
    <div class="card"><h2>Category fit: penetration</h2>${shareBars(fit)}</div>
  </div>
  <div class="two" style="margin-top:16px">
    <div class="card"><h2>Who they are</h2>${(s.attributes || []).map((a) => `<h3>${esc(a.attribute)}</h3>${shareBars(a.values, { label: a.attribute, limit: 8 })}`).join("") || '<p class="muted">No outlet attributes in master data.</p>'}</div>
    <div>
      <div class="card"><h2>Name and tags</h2>
        <form class="edit" id="edit">
          <label>Name <input name="name" value="${esc(s.name)}" maxlength="80" required></label>
          <label>Description <textarea name="description" maxlength="2000">${esc(s.description)}</textarea></label>
          <label>Tags (space separated) <input name="tags" value="${esc((s.tags || []).join(" "))}" placeholder="#premium #coffee"></label>
          <div><button type="submit">Save</button> <span class="muted">Outlets are republished with <code>change: renamed</code>.</span></div>
        </form></div>
      <div class="card" style="margin-top:16px"><h2>Purchasing patterns</h2>${(s.patterns || []).map(patternBlock).join("") || '<p class="muted">None.</p>'}</div>
      <div class="card" style="margin-top:16px"><h2>KPIs</h2><table>
        <tr><td>Net value</td><td class="num">${num(s.kpis?.value)}</td></tr>
        <tr><td>Value per outlet</td><td class="num">${num(s.kpis?.avg_outlet_value)}</td></tr>
        <tr><td>Invoices per month</td><td class="num">${fmt1.format(s.kpis?.invoices_per_month || 0)}</td></tr>
        <tr><td>Average invoice value</td><td class="num">${num(s.kpis?.avg_invoice_value)}</td></tr>
        <tr><td>Distinct SKUs per outlet</td><td class="num">${fmt1.format(s.kpis?.distinct_skus || 0)}</td></tr></table></div>
    </div>
  </div>
  ${trendCard(trends, s.segment_id)}
  <div class="card" style="margin-top:16px" id="context"><h2>Context</h2><p class="muted">Loading…</p></div>
  <div class="card" style="margin-top:16px" id="outlets" data-sort="${by}"><h2>${by === "tier" ? "Outlets with the most to win" : "Largest outlets"}</h2>
    <p class="muted">Sort by <a href="#/segment/${encodeURIComponent(s.segment_id)}"${by === "value" ? ' class="active"' : ""}>value</a> · <a href="#/segment/${encodeURIComponent(s.segment_id)}/potential"${by === "tier" ? ' class="active"' : ""}>potential (tier A first)</a></p>
    <table><thead><tr><th>outlet</th><th>name</th><th>region</th><th>channel</th><th class="num">value</th><th class="num">potential</th><th>tier</th><th class="num">confidence</th><th>change</th></tr></thead><tbody>
    ${outlets.map((o) => `<tr class="outlet-row"><td><a href="#/outlet/${encodeURIComponent(o.outlet_id)}">${esc(o.outlet_id)}</a></td><td>${esc(o.name)}</td><td>${esc(o.region)}</td><td>${esc(o.channel)}</td><td class="num">${num(o.value)}</td><td class="num">${num(o.potential)}</td><td class="tier">${esc(o.tier)}</td><td class="num">${fmt1.format(100 * o.confidence)}%</td><td>${esc(o.change)}</td></tr>`).join("")}
  </tbody></table></div>`;
  $("#edit").onsubmit = (e) => { e.preventDefault(); saveSegment(name, s.segment_id, new FormData(e.target)); };
  await loadContext(name, s.segment_id, "", "");
}

// The segment in context: its mix over a product level or an outlet field against all
// outlets, optionally only over the outlets of one region, channel or distributor.
async function loadContext(name, id, filter, dim) {
  const c = await api(`/api/segmentations/${encodeURIComponent(name)}/segments/${encodeURIComponent(id)}/context${filter ? "?" + filter : ""}`)
    .catch((e) => ({ error: e.message }));
  showContext(name, id, c, filter, dim);
}

function showContext(name, id, c, filter, dim) {
  const box = $("#context");
  if (!box) return;
  box.innerHTML = contextBody(c, filter, dim);
  const f = $("#context-filter"), d = $("#context-dim");
  if (f) f.onchange = () => loadContext(name, id, f.value, d.value);
  if (d) d.onchange = () => showContext(name, id, c, filter, d.value);
}

function contextBody(c, filter, dim) {
  if (c.error) return `<h2>Context</h2><p class="muted">${esc(c.error)}</p>`;
  const dims = [...c.product.map((d) => ({ ...d, kind: "product" })), ...c.outlet.map((d) => ({ ...d, kind: "outlet" }))];
  const key = (d) => `${d.kind}.${d.dimension}`;
  const cur = dims.find((d) => key(d) === dim) || dims.find((d) => d.dimension === "brand") || dims[0];
  const groups = Object.entries(c.filters).filter(([, vs]) => vs.length).map(([f, vs]) => `<optgroup label="${esc(f)}">${vs.map((v) => {
    const val = `${f}=${encodeURIComponent(v)}`;
    return `<option value="${esc(val)}"${val === filter ? " selected" : ""}>${esc(f)}: ${esc(v)}</option>`;
  }).join("")}</optgroup>`).join("");
  const dopts = dims.map((d) => `<option value="${esc(key(d))}"${d === cur ? " selected" : ""}>${d.kind === "product" ? "Products" : "Outlets"} · ${esc(d.dimension)}</option>`).join("");
  const product = cur?.kind === "product";
  const rows = (cur?.values || []).slice(0, 12).map((v) => `<tr class="context-row" data-value="${esc(v.value)}"><td>${esc(v.name || v.value)}</td><td class="num">${pct(v.share)}</td><td class="num">${pct(v.average)}</td><td class="num idx">${fmt.format(v.index)}</td><td class="num">${product ? pct(v.penetration) : num(v.outlets)}</td></tr>`).join("");
  return `<h2>Context</h2><div class="context-controls"><label>Outlets <select id="context-filter"><option value="">all</option>${groups}</select></label>
    <label>By <select id="context-dim">${dopts}</select></label></div>
    <p class="muted" id="context-scope">${num(c.outlets)} of the segment's outlets, ${num(c.all_outlets)} outlets in all${c.filter ? ` with ${esc(c.filter.field)} ${esc(c.filter.value)}` : ""}</p>
    <table data-dimension="${esc(cur ? key(cur) : "")}"><thead><tr><th>${esc(cur?.dimension || "")}</th><th class="num">${product ? "share of spend" : "share of outlets"}</th><th class="num">all outlets</th><th class="num">index</th><th class="num">${product ? "penetration" : "outlets"}</th></tr></thead><tbody>${rows}</tbody></table>`;
}

// A segment over the last runs: outlets and value as lines, its strongest features'
// shares first and last.
function trendCard(t, id) {
  const seg = t && (t.segments || []).find((x) => x.segment_id === id);
  const head = `<div class="card" style="margin-top:16px" data-trend="${esc(id)}"><h2>Trend over runs</h2>`;
  if (!seg || t.runs.length < 2) return `${head}<p class="muted">One run so far: the trend starts with the next run.</p></div>`;
  const first = seg.outlets.findIndex((v) => v != null);
  const last = seg.outlets.length - 1 - [...seg.outlets].reverse().findIndex((v) => v != null);
  const line = (vals, label) => {
    const pts = vals.map((v, i) => [i, v]).filter((p) => p[1] != null);
    const max = Math.max(1e-9, ...pts.map((p) => Math.abs(p[1])));
    const w = 300, h = 60, n = Math.max(1, vals.length - 1);
    const xy = pts.map(([i, v]) => `${((i / n) * w).toFixed(1)},${(h - 4 - (Math.max(v, 0) / max) * (h - 8)).toFixed(1)}`).join(" ");
    return `<div><h3>${label}</h3><svg viewBox="0 0 ${w} ${h}" class="trend" data-series="${label}" style="width:100%;height:70px" role="img" aria-label="${label} over runs"><polyline fill="none" stroke="#4f46e5" stroke-width="2" points="${xy}"/></svg><span class="muted" data-range="${label}">${num(vals[first])} → ${num(vals[last])}</span></div>`;
  };
  const rows = seg.spectrum.map((f) => `<tr><td>${esc(f.feature)}</td><td class="num">${pct(f.share[first] || 0)}</td><td class="num">${pct(f.share[last] || 0)}</td></tr>`).join("");
  return `${head}<span class="muted">${esc(t.runs[first].as_of || t.runs[first].run_id)} → ${esc(t.runs[last].as_of || t.runs[last].run_id)}, ${num(last - first + 1)} runs</span>
    <div class="two">${line(seg.outlets, "outlets")}${line(seg.value, "value")}</div>
    <table><thead><tr><th>feature</th><th class="num">first run</th><th class="num">latest run</th></tr></thead><tbody>${rows}</tbody></table></div>`;
}

function patternBlock(p) {
  const skus = (p.skus || []).map((k) => `<span data-sku="${esc(k.sku_id)}" title="${esc(k.sku_id)}">${esc(k.sku_name || k.sku_id)}</span> ${fmt1.format(k.share_pct ?? 100 * (k.share || 0))}%`).join(", ");
  return `<div class="pattern"><b>${esc(p.name || p.feature)}</b>${p.outlets_share != null ? ` <span class="muted">(${pct(p.outlets_share)} of outlets)</span>` : ""}<div class="skus">${skus}</div></div>`;
}

async function saveSegment(name, id, form, retried = false) {
  const body = { name: form.get("name"), description: form.get("description"), tags: form.get("tags").split(/\s+/).filter(Boolean) };
  try {
    if (!token(false)) token(true);
    await api(`/api/segmentations/${encodeURIComponent(name)}/segments/${encodeURIComponent(id)}`, {
      method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
    });
    toast("Saved; outlets are being republished");
    viewSegment(id);
  } catch (e) {
    if (e.status === 401 && !retried) { token(true); return saveSegment(name, id, form, true); }
    toast(e.message);
  }
}

async function viewMovement() {
  if (!state.current) return (main.innerHTML = noRun());
  const m = await api(`/api/segmentations/${encodeURIComponent(state.current)}/movement`);
  const ids = Object.keys(m.segments);
  const count = (from, to) => m.flows.filter((f) => f.from === from && f.to === to).reduce((s, f) => s + Number(f.outlets), 0);
  const max = Math.max(1, ...m.flows.filter((f) => f.from !== f.to).map((f) => f.outlets));
  const cell = (from, to) => {
    const n = count(from, to);
    const bg = from === to ? "#f1f3f5" : n ? `rgba(79,70,229,${0.12 + (0.75 * n) / max})` : "transparent";
    const fg = from !== to && n / max > 0.55 ? "#fff" : "inherit";
    return `<td class="cell" style="background:${bg};color:${fg}">${n ? num(n) : ""}</td>`;
  };
  const rows = [null, ...ids].map((from) => `<tr><th>${from === null ? "new outlets" : `${esc(m.segments[from])} <span class="badge">${esc(from)}</span>`}</th>${ids.map((to) => cell(from, to)).join("")}</tr>`);
  main.innerHTML = `<div class="page-head"><div><h1>Segment movement</h1><span class="muted">${esc(m.run_id)}: ${num(m.moved)} moved, ${num(m.new)} new, ${num(m.outlets)} outlets</span></div></div>
  <div class="card"><p class="muted">Rows: segment in the previous run. Columns: segment now. The diagonal is outlets that stayed.</p>
  <table class="matrix"><thead><tr><th>from \\ to</th>${ids.map((id) => `<th>${esc(m.segments[id])} <span class="badge">${esc(id)}</span></th>`).join("")}</tr></thead><tbody>${rows.join("")}</tbody></table></div>
  <div id="runs-compare"></div>
  <div id="moves"></div>`;
  // Any two runs: the comparison page (crosswalk, and every outlet that moved, with why).
  const t = await api(`/api/segmentations/${encodeURIComponent(state.current)}/trends?runs=60&features=1`).catch(() => null);
  if (t && t.runs.length >= 2) {
    const opts = (sel) => t.runs.map((r, i) => `<option value="${esc(r.run_id)}"${i === sel ? " selected" : ""}>${esc(r.run_id)}${r.held ? " (held)" : ""}</option>`).reverse().join("");
    $("#runs-compare").innerHTML = `<div class="card" style="margin-top:16px"><h2>Compare any two runs</h2><form class="edit" id="runs-form" style="display:flex;gap:12px;align-items:end">
      <label>From <select name="a">${opts(t.runs.length - 2)}</select></label><label>To <select name="b">${opts(t.runs.length - 1)}</select></label><button type="submit">Compare</button></form></div>`;
    $("#runs-form").onsubmit = (e) => {
      e.preventDefault();
      const f = new FormData(e.target);
      location.hash = `#/compare/${encodeURIComponent(`${f.get("a")}..${f.get("b")}`)}`;
    };
  }
  const ev = await api(`/api/segmentations/${encodeURIComponent(state.current)}/movements?limit=500`).catch(() => null);
  if (ev) $("#moves").innerHTML = movesCard(ev, m.segments);
}

// The first moves with their evidence (all of them up to 500), and segments whose own
// profile drifted (a different event from outlets moving).
function movesCard(ev, names) {
  const seg = (id) => `${esc(names[id] || id)} <span class="badge">${esc(id)}</span>`;
  const pct = (x) => `${(100 * (x || 0)).toFixed(0)}%`;
  const score = fixed(1);
  const drivers = (d) => (d || []).slice(0, 3).map((x) => driver(x, pct)).join("; ");
  const rows = ev.movements.map((v) => `<tr class="move"><td><a href="#/outlet/${encodeURIComponent(v.outlet_id)}">${esc(v.outlet_id)}</a></td><td>${seg(v.previous_segment_id)}</td><td>${seg(v.segment_id)}</td><td>${esc(v.reason)}</td><td class="num">${score(v.score)}</td><td class="num">${score(v.fit)}</td><td class="num">${num(v.recent_invoices)}</td><td>${drivers(v.drivers)}</td></tr>`);
  return `<div class="card"><h2>Why outlets moved</h2>
  <p class="muted">${num(ev.moved)} moves in ${esc(ev.run_id)}.${ev.detector && ev.detector.outlets_placed ? ` ${num(ev.detector.outlets_placed)} new outlets whose purchases had already changed were placed by their recent purchases, not by the nearest centroid (they are new, not moved).` : ""} Score: how far the recent purchases differ from the earlier, in spend or in invoice lines per feature (standard normal quantile); fit: log Bayes factor of the recent purchases as a member of the new segment buys them against as the outlet bought before. Drivers' shares are of spend, or of lines where marked.${ev.moved > 500 ? " The first 500 are shown." : ""}</p>
  ${rows.length ? `<table class="moves"><thead><tr><th>outlet</th><th>from</th><th>to</th><th>reason</th><th>score</th><th>fit</th><th>recent invoices</th><th>drivers (earlier → recent share)</th></tr></thead><tbody>${rows.join("")}</tbody></table>` : '<p class="empty">No outlet moved in this run.</p>'}
  <h3>Segments whose own profile drifted</h3>
  ${driftTable(ev.segment_drift || [], seg, drivers)}</div>`;
}

// Every segment's own drift between the earlier and the recent window, the drifted
// ones flagged: the drift that flags it (Hellinger distance of its members' pooled
// shares, in spend and in invoice lines), the part of it beyond all outlets' drift,
// and the features that moved most.
function driftTable(all, seg, drivers) {
  if (!all.length) return '<p class="muted">The change detector did not run.</p>';
  const two = fixed(2);
  const drifted = all.filter((d) => d.drifted).length;
  const rows = all.map((d) => `<tr class="drift${d.drifted ? " drifted" : ""}" data-segment="${esc(d.segment_id)}"><td>${seg(d.segment_id)}</td><td class="num">${two(d.drift)}</td><td class="num">${two(d.line_drift)}</td><td class="num">${two(d.own_drift)}</td><td class="num">${two(d.line_own_drift)}</td><td>${d.drifted ? "<b>drifted</b>" : ""}</td><td>${drivers(d.drivers)}</td></tr>`);
  return `<p class="muted">${drifted ? `${num(drifted)} of ${num(all.length)} segments drifted: their members as a whole buy differently now, a different event from outlets moving.` : "None: each segment's members buy now as they did earlier in the window."} Drift: Hellinger distance between the members' pooled earlier and recent shares; beyond all outlets: the same after what every outlet did is taken out.</p>
  <table class="drift"><thead><tr><th>segment</th><th class="num">drift in spend</th><th class="num">in lines</th><th class="num">beyond all outlets, spend</th><th class="num">in lines</th><th></th><th>features that moved most (earlier → recent share)</th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
}

async function viewOutlet(id) {
  main.innerHTML = `<div class="page-head"><h1>Outlet 360</h1><form class="search" id="search"><input name="q" placeholder="Outlet id or name" value="${esc(id || "")}"><button>Find</button></form></div><div id="outlet-body"></div>`;
  $("#search").onsubmit = async (e) => {
    e.preventDefault();
    const q = new FormData(e.target).get("q").trim();
    if (!q) return;
    const hits = await api(`/api/outlets?q=${encodeURIComponent(q)}`).catch(() => []);
    const exact = hits.find((h) => h.outlet_id === q);
    if (exact || hits.length === 1) return (location.hash = `#/outlet/${encodeURIComponent((exact || hits[0]).outlet_id)}`);
    $("#outlet-body").innerHTML = hits.length ? `<div class="card"><table>${hits.map((h) => `<tr><td><a href="#/outlet/${encodeURIComponent(h.outlet_id)}">${esc(h.outlet_id)}</a></td><td>${esc(h.name)}</td><td>${esc(h.segmentation)} / ${esc(h.segment_id)}</td></tr>`).join("")}</table></div>` : `<div class="card empty">No outlet matches “${esc(q)}”.</div>`;
  };
  if (!id) return;
  let o;
  try { o = await api(`/api/outlets/${encodeURIComponent(id)}`); } catch (e) { $("#outlet-body").innerHTML = `<div class="card empty">${esc(e.message)}</div>`; return; }
  $("#outlet-body").innerHTML = `<div class="card"><h2>${esc(o.name || o.outlet_id)} <span class="badge">${esc(o.outlet_id)}</span></h2>
    <span class="muted">${esc([o.region, o.channel, ...Object.entries(o.attributes || {}).map(([k, v]) => `${k}: ${v}`)].filter(Boolean).join(" · "))}</span>
    ${o.history_note ? `<h3>Weekly net value</h3><p class="muted history-note">${esc(o.history_note)}</p>` : `<h3>Weekly net value, last ${o.history.length} weeks</h3>${historyChart(o.history)}`}</div>
    ${o.segmentations.map(outletSegmentation).join("")}`;
}

function historyChart(h) {
  if (!h.length) return '<p class="muted">No history.</p>';
  const max = Math.max(1, ...h.map((w) => w.value));
  const bw = 1000 / h.length;
  const bars = h.map((w, i) => { const ht = (Math.max(w.value, 0) / max) * 90; return `<rect x="${(i * bw + 2).toFixed(1)}" y="${(95 - ht).toFixed(1)}" width="${(bw - 4).toFixed(1)}" height="${ht.toFixed(1)}" fill="#4f46e5" rx="2"><title>week of ${esc(w.week)}: ${num(w.value)} (${num(w.lines)} lines)</title></rect>`; });
  return `<svg viewBox="0 0 1000 100" style="width:100%;height:110px" role="img" aria-label="weekly history">${bars.join("")}<line x1="0" y1="95.5" x2="1000" y2="95.5" stroke="#cbd5e1"/></svg>`;
}

function outletSegmentation(v) {
  const spec = v.spectrum.slice(0, 14);
  const max = Math.max(0.0001, ...spec.map((f) => Math.max(f.outlet_share, f.segment_share)));
  const r = v.recommendations || {};
  const notes = v.recommendation_notes || {};
  const list = (title, key) => {
    const items = r[key];
    const empty = `<p class="muted" data-note="${esc(key)}">${esc(notes[key] || "Nothing now.")}</p>`;
    return `<div><h3>${title}</h3>${items && items.length ? `<ol>${items.map((i) => `<li data-sku="${esc(i.sku_id)}">${esc(i.sku_name || i.sku_id)}${i.sku_name ? ` <span class="muted">${esc(i.sku_id)}</span>` : ""} <span class="muted">× ${num(i.suggested_quantity)} · score ${fmt1.format(i.score)}</span>${i.reason ? `<div class="muted reason">${esc(i.reason)}</div>` : ""}</li>`).join("")}</ol>` : empty}</div>`;
  };
  return `<div class="card" style="margin-top:16px"><h2>${esc(v.segmentation)}: ${esc(v.segment_name)} <span class="badge">${esc(v.segment_id)}</span></h2>${tags(v.tags)}
    <div class="stats"><div class="stat"><b>${num(v.value)}</b><span>net value in window</span></div><div class="stat"><b>${num(v.potential)}</b><span>potential${v.tier ? ` · tier <b class="tier">${esc(v.tier)}</b>` : ""}</span></div>
    <div class="stat"><b>${fmt1.format(100 * v.confidence)}%</b><span>confidence</span></div><div class="stat"><b>${esc(v.change)}</b><span>${v.previous_segment_id ? "from " + esc(v.previous_segment_id) : "since last run"}</span></div></div>
    <div class="two"><div><h3>Spectrum: outlet (colour) vs segment (grey)</h3><table>${spec.map((f) => `<tr><td>${esc(f.feature)}</td><td style="width:55%"><div class="bar" style="width:${(100 * f.outlet_share) / max}%"></div><div class="bar avg" style="width:${(100 * f.segment_share) / max}%;margin-top:2px"></div></td><td class="num">${pct(f.outlet_share)}</td><td class="num muted">${pct(f.segment_share)}</td></tr>`).join("")}</table></div>
    <div><h3>Recommendations</h3><div class="recs" style="grid-template-columns:1fr 1fr">${list("New for outlet", "new_for_outlet")}${list("Should have", "should_have")}${list("Popular in segment", "popular_in_segment")}${list("Seasonal soon", "seasonal_soon")}</div></div></div>
    ${movedWhy(v)}${skuGaps(v.sku_gaps)}</div>`;
}

// Why the outlet moved in this run: the evidence the run stored with the move.
function movedWhy(v) {
  const m = v.movement;
  if (!m) return "";
  const score = fixed(1);
  const drivers = (m.drivers || []).map((d) => `<li>${driver(d)}</li>`).join("");
  return `<div class="moved-why"><h3>Why it moved: ${esc(m.previous_segment_id)} → ${esc(m.segment_id)}</h3>
    <p><b class="reason">${esc(m.reason)}</b>${m.score != null ? ` · change score ${score(m.score)}` : ""}${m.fit != null ? ` · fit ${score(m.fit)}` : ""} · ${num(m.recent_invoices)} recent invoices, ${num(m.recent_lines)} lines (${num(m.earlier_lines)} before)</p>
    ${drivers ? `<ul class="drivers">${drivers}</ul>` : ""}</div>`;
}

// The SKUs the outlet has the most to win on against its segment.
function skuGaps(gaps) {
  if (gaps == null) return "";
  const head = `<h3>Most to win, by SKU</h3>`;
  if (!gaps.length) return `${head}<p class="muted">Buys every one of its segment's leading SKUs at least at the segment's share.</p>`;
  return `${head}<table class="sku-gaps"><thead><tr><th>SKU</th><th class="num">spent here</th><th class="num">segment share</th><th class="num">penetration</th><th class="num">potential</th></tr></thead><tbody>${gaps.map((g) => `<tr class="sku-gap" data-sku="${esc(g.sku_id)}"><td>${esc(g.sku_name || g.sku_id)}${g.sku_name ? ` <span class="muted">${esc(g.sku_id)}</span>` : ""}</td><td class="num">${num(g.outlet_spend)}</td><td class="num">${pct(g.segment_share)}</td><td class="num">${pct(g.penetration)}</td><td class="num">${num(g.potential)}</td></tr>`).join("")}</tbody></table>`;
}

async function viewPipeline() {
  const p = await api("/api/pipeline");
  const q = (x) => (x == null ? "" : typeof x === "number" ? (Math.abs(x) < 10 ? x.toFixed(3) : fmt1.format(x)) : esc(x));
  const k = p.kafka || {};
  main.innerHTML = `<div class="page-head"><div><h1>Pipeline</h1><span class="muted">as of ${esc(p.now)} · raw data up to ${esc(p.raw_latest_date || "—")} · daily features up to ${esc(p.features_latest_date || "—")}${p.aggregator?.rerolling?.since ? ` · <span class="bad rerolling">days re-rolled for moved lines since ${esc(p.aggregator.rerolling.since)}: readers wait for it</span>` : ""}</span></div></div>
  <div class="three">
    <div class="card"><h2>Dead letters</h2><b style="font-size:26px" class="${k.dead_letters ? "bad" : "ok"}">${k.error ? "?" : num(k.dead_letters)}</b><div class="muted">${esc(k.error || `messages on ${k.dead_letter_topic}`)}</div></div>
    <div class="card"><h2>Ingest lag</h2><b style="font-size:26px">${k.ingest_lag ? num(k.ingest_lag.reduce((s, l) => s + l.lag, 0)) : "?"}</b><div class="muted">messages behind, ${num(k.ingest_lag ? k.ingest_lag.length : 0)} partitions</div></div>
    <div class="card"><h2>Segmentations</h2><b style="font-size:26px">${num(p.segmentations.length)}</b><div class="muted">${p.segmentations.filter((s) => s.published_behind).length} waiting to be published</div></div>
  </div>
  ${p.segmentations.map((s) => `<div class="card" style="margin-top:16px"><h2>${esc(s.name)}</h2>
    ${s.held ? `<div class="bad">held: ${esc(s.held.run_id)} (${pct(s.held.change_share)} of outlets would change)</div>` : ""}
    <span class="muted">latest ${esc(s.latest?.run_id || "none")} · ${esc(s.days_since_as_of ?? "—")} days since as-of · published ${esc(s.published?.run_id || "never")} ${esc(s.published?.published_at || "")}</span>
    <table style="margin-top:8px"><thead><tr><th>run</th><th class="num">segments</th>${qualityKeys(s.runs).map((key) => `<th class="num">${esc(key)}</th>`).join("")}</tr></thead><tbody>
    ${s.runs.map((r) => `<tr><td>${esc(r.run_id)}</td><td class="num">${esc(r.segments)}</td>${qualityKeys(s.runs).map((key) => `<td class="num">${q(r.quality?.[key])}</td>`).join("")}</tr>`).join("")}</tbody></table></div>`).join("")}`;
}

// The run qualities the pipeline page shows, in reading order (the API's JSON objects
// come key-sorted, so their order says nothing).
const QUALITY = ["silhouette", "inertia", "ari_previous", "outlets_assigned", "outlets_new", "outlets_moved", "outlets_left", "duration_ms"];

function qualityKeys(runs) {
  return QUALITY.filter((k) => runs.some((r) => r.quality && r.quality[k] != null));
}

// The parameters a person edits, from a form, as changes against `cur`.
function formChanges(form, cur) {
  const changes = {};
  for (const [k, v] of form.entries()) {
    if (k === "note" || k === "name") continue;
    const val = k === "level" ? v.trim() : k === "exclude" ? v.split(",").map((x) => x.trim()).filter(Boolean) : k === "k" ? (v.trim() === "auto" ? "auto" : Number(v)) : v === "" ? null : Number(v);
    const was = k === "exclude" ? cur.exclude || [] : cur[k] ?? null;
    if (JSON.stringify(val) !== JSON.stringify(was)) changes[k] = val;
  }
  return changes;
}

function paramFields(cur) {
  return `<label>Level <input name="level" value="${esc(cur.level ?? "category")}"></label>
      <label>k (a number or auto) <input name="k" value="${esc(cur.k ?? "auto")}"></label>
      <label>Window (days) <input name="window_days" type="number" min="1" value="${esc(cur.window_days ?? 91)}"></label>
      <label>Half-life (days, empty: none) <input name="half_life_days" type="number" min="1" value="${esc(cur.half_life_days ?? "")}"></label>
      <label>Minimum value <input name="min_value" type="number" min="0" value="${esc(cur.min_value ?? 0)}"></label>
      <label>Move margin <input name="move_margin" type="number" min="0" max="0.99" step="0.01" value="${esc(cur.move_margin ?? 0.1)}"></label>
      <label>KPI weight <input name="kpi_weight" type="number" min="0" step="0.1" value="${esc(cur.kpi_weight ?? 0)}"></label>
      <label>Excluded values (comma separated) <input name="exclude" value="${esc((cur.exclude || []).join(", "))}"></label>
      <label>Note <input name="note" maxlength="2000"></label>`;
}

async function change(path, method, body, done) {
  try {
    if (!token(false)) token(true);
    const r = await api(path, { method, headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    toast(done(r));
    await loadSegmentations();
    route();
  } catch (e) {
    toast(e.message);
  }
}

// Steering a segmentation: its stored definition (edit, retire, history), drafts of
// changed parameters computed beside it and never published, and new segmentations.
function select(name) {
  if (name && state.segmentations.some((s) => s.name === name)) {
    state.current = name;
    $("#segmentation").value = name;
  }
}

async function viewDrafts(only) {
  select(only);
  if (!state.current) return (main.innerHTML = noRun());
  const name = encodeURIComponent(state.current);
  const [drafts, def] = await Promise.all([api(`/api/segmentations/${name}/drafts`), api(`/api/segmentations/${name}/definition`)]);
  const cur = def.current.definition || {};
  const row = (d) => `<tr data-draft="${esc(d.name)}"><td>${esc(d.name)}</td><td>${esc(d.status)}</td><td>${esc(d.definition?.level ?? "")}</td><td class="num">${esc(d.definition?.k ?? "")}</td>
    <td>${esc(d.by)}</td><td>${esc(String(d.at).slice(0, 16).replace("T", " "))}</td><td>${esc(d.latest_run || "—")}</td>
    <td>${d.ready ? `<a href="#/compare/${encodeURIComponent(d.name)}">Compare</a> <button type="button" data-promote="${esc(d.name)}">Promote</button>` : d.status === "open" ? '<span class="muted">computing…</span>' : ""}
    ${d.status === "open" ? ` <button type="button" class="link" data-discard="${esc(d.name)}">Discard</button>` : ""}</td></tr>`;
  const history = def.history.slice().reverse().map((v) => `<tr><td class="num">${esc(v.version)}</td><td>${esc(v.action)}</td><td>${esc(v.by)}</td><td>${esc(String(v.at).slice(0, 16).replace("T", " "))}</td><td>${esc(v.note || "")}</td></tr>`).join("");
  main.innerHTML = `<div class="page-head"><div><h1>Steer ${esc(state.current)}</h1>
    <span class="muted">Version ${esc(def.current.version)} (${esc(def.current.action)} by ${esc(def.current.by)}) · level ${esc(cur.level)} · k ${esc(cur.k)} · window ${esc(cur.window_days)} days</span></div></div>
    <div class="card"><h2>Drafts</h2><table id="drafts"><thead><tr><th>draft</th><th>status</th><th>level</th><th class="num">k</th><th>by</th><th>at</th><th>run</th><th></th></tr></thead>
    <tbody>${drafts.map(row).join("") || '<tr><td colspan="8" class="muted">No drafts yet.</td></tr>'}</tbody></table>
    <h3>New draft</h3><p class="muted">Computed on the current features after the aggregator's next pass; nothing is published until it is promoted.</p>
    <form class="edit params" id="new-draft">${paramFields(cur)}<div><button type="submit">Open draft</button></div></form></div>
    <div class="two" style="margin-top:16px">
    <div class="card"><h2>Live definition</h2><p class="muted">A change is a new version; the segmentation runs again at once and the changes are published.</p>
      <form class="edit params" id="edit-def">${paramFields(cur)}<div><button type="submit">Save as version ${esc(def.current.version + 1)}</button> <button type="button" class="link" id="retire">Retire</button></div></form>
      <h3>History</h3><table id="history"><thead><tr><th class="num">version</th><th>what</th><th>who</th><th>when</th><th>note</th></tr></thead><tbody>${history}</tbody></table></div>
    <div class="card"><h2>New segmentation</h2><form class="edit params" id="new-seg"><label>Name <input name="name" pattern="[A-Za-z0-9_-]{1,64}" required></label>${paramFields({})}<div><button type="submit">Create</button></div></form></div></div>`;
  const base = `/api/segmentations/${name}`;
  $("#new-draft").onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    change(`${base}/drafts`, "POST", { changes: formChanges(f, cur), note: f.get("note") }, (d) => `Draft ${d.name} opened`);
  };
  $("#edit-def").onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    change(`${base}/definition`, "PUT", { changes: formChanges(f, cur), version: def.current.version, note: f.get("note") }, (v) => `Version ${v.version} saved`);
  };
  $("#retire").onclick = () => confirm(`Retire ${state.current}? It stops running; its last run stays served.`) && change(`${base}/definition`, "DELETE", {}, () => "Retired");
  $("#new-seg").onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const definition = { name: f.get("name").trim(), ...formChanges(f, {}) };
    change("/api/segmentations", "POST", { definition, note: f.get("note") }, (v) => `${v.name} created; it runs after the aggregator's next pass`);
  };
  main.querySelectorAll("[data-promote]").forEach((b) => (b.onclick = () => decide(b.dataset.promote, "promote")));
  main.querySelectorAll("[data-discard]").forEach((b) => (b.onclick = () => decide(b.dataset.discard, "discard")));
}

async function decide(draft, what) {
  if (what === "promote" && !confirm(`Promote ${draft}? Its segments go live and changed assignments are published.`)) return;
  change(`/api/segmentations/${encodeURIComponent(state.current)}/drafts/${encodeURIComponent(draft)}/${what}`, "POST", {},
    () => (what === "promote" ? "Promoted; the next run takes its segments" : "Discarded"));
}

// Crosswalk cell colour: white to teal by share of the largest cell (solid colours).
function crossColor(n, max) {
  const t = max ? n / max : 0;
  const from = [240, 249, 250], to = [12, 133, 153];
  return `rgb(${from.map((f, i) => Math.round(f + (to[i] - f) * t)).join(",")})`;
}

// A draft (or run b) against the live run (or run a): agreement, crosswalk, spectrum
// differences of the segments that correspond, and the outlets that would move.
async function viewCompare(arg) {
  // The segmentation is in the draft's name (`{name}.draft-{n}`) or the run ids.
  const parent = (arg.includes("..") ? arg.split("..")[0].split("/")[0] : arg).split(".draft-")[0];
  if (arg.includes(".draft-") || arg.includes("..")) select(parent);
  const name = encodeURIComponent(state.current);
  const q = arg.includes("..") ? `a=${encodeURIComponent(arg.split("..")[0])}&b=${encodeURIComponent(arg.split("..")[1])}` : `draft=${encodeURIComponent(arg)}`;
  const c = await api(`/api/segmentations/${name}/compare?${q}`);
  const aSegs = c.a.segments.map((s) => s.segment_id), bSegs = c.b.segments.map((s) => s.segment_id);
  const aName = Object.fromEntries(c.a.segments.map((s) => [s.segment_id, s.name]));
  const bName = Object.fromEntries(c.b.segments.map((s) => [s.segment_id, s.name]));
  const matchOf = Object.fromEntries(c.matches.map((m) => [m.b, m.a]));
  const cell = (a, b) => c.crosswalk.find((x) => x.a === a && x.b === b) || { outlets: 0, value: 0 };
  const max = Math.max(1, ...c.crosswalk.filter((x) => x.a && x.b).map((x) => x.outlets));
  const rows = [...aSegs, null].map((a) => `<tr><th>${a === null ? "not in a" : `${esc(aName[a])} <span class="badge">${esc(a)}</span>`}</th>${[...bSegs, null].map((b) => {
    if (a === null && b === null) return "<td></td>";
    const x = cell(a, b);
    const matched = a && b && matchOf[b] === a;
    const fg = a && b && x.outlets / max > 0.55 ? "#fff" : "inherit";
    return `<td class="cell${matched ? " matched" : ""}" style="background:${a && b ? crossColor(x.outlets, max) : "#f8f9fa"};color:${fg}" title="${num(x.value)} value">${x.outlets ? num(x.outlets) : ""}${x.outlets ? `<small>${num(x.value)}</small>` : ""}</td>`;
  }).join("")}</tr>`);
  const sizeMax = Math.max(1, ...c.a.segments.map((s) => s.outlets), ...c.b.segments.map((s) => s.outlets));
  const sizes = (side, names) => side.segments.map((s) => `<tr><td>${esc(names[s.segment_id])} <span class="badge">${esc(s.segment_id)}</span></td><td style="width:55%"><div class="bar" style="width:${(100 * s.outlets) / sizeMax}%"></div></td><td class="num">${num(s.outlets)}</td><td class="num">${num(s.value)}</td></tr>`).join("");
  const spectrum = c.spectrum.map((p) => `<div><h3>${esc(aName[p.a])} → ${esc(bName[p.b])}</h3><table>${p.features.map((f) => `<tr><td>${esc(f.feature)}</td><td class="num">${pct(f.a)}</td><td class="num">${pct(f.b)}</td><td class="num ${f.difference > 0 ? "ok" : "bad"}">${f.difference > 0 ? "+" : ""}${fmt1.format(100 * f.difference)} pt</td></tr>`).join("")}</table></div>`).join("");
  const why = (m) => (m.reason ? `${esc(m.reason)}${m.score != null ? ` <span class="muted">score ${fmt1.format(m.score)}</span>` : ""}${(m.drivers || []).length ? ` <span class="muted">${m.drivers.map((d) => driver(d)).join(", ")}</span>` : ""}` : "");
  const movers = c.movers.listed.slice(0, 50).map((m) => `<tr class="mover"><td><a href="#/outlet/${encodeURIComponent(m.outlet_id)}">${esc(m.outlet_id)}</a></td><td>${esc(aName[m.from] || m.from)}</td><td>${esc(bName[m.to] || m.to)}${matchOf[m.to] ? "" : ' <span class="badge">new</span>'}</td><td class="num">${num(m.value)}</td><td>${why(m)}</td></tr>`).join("");
  main.innerHTML = `<div class="crumbs"><a href="#/drafts">← drafts</a></div>
  <div class="page-head"><div><h1>Comparison</h1><span class="muted">a: ${esc(c.a.run_id)} (${esc(c.a.level)}) · b: ${esc(c.b.run_id)} (${esc(c.b.level)})</span></div></div>
  <div class="three"><div class="card"><h2>Agreement (ARI)</h2><b style="font-size:26px" id="ari">${c.ari.toFixed(3)}</b><div class="muted">on ${num(c.outlets.both)} outlets in both runs</div></div>
    <div class="card"><h2>Would move</h2><b style="font-size:26px" id="movers">${num(c.movers.outlets)}</b><div class="muted">outlets, ${num(c.movers.value)} of value</div></div>
    <div class="card"><h2>Outlets</h2><b style="font-size:26px">${num(c.outlets.a)} → ${num(c.outlets.b)}</b><div class="muted">${num(c.outlets.only_a)} only in a, ${num(c.outlets.only_b)} only in b</div></div></div>
  <div class="card" style="margin-top:16px"><h2>Crosswalk</h2><p class="muted">Rows: segments of a (live). Columns: segments of b. Each cell: outlets (value below); outlined cells are the segments that correspond, whose ids b takes on promotion.</p>
    <table class="matrix crosswalk" id="crosswalk"><thead><tr><th>a \\ b</th>${bSegs.map((b) => `<th>${esc(bName[b])} <span class="badge">${esc(b)}</span>${matchOf[b] ? ` <span class="muted">→ ${esc(matchOf[b])}</span>` : ' <span class="muted">new</span>'}</th>`).join("")}<th>not in b</th></tr></thead><tbody>${rows.join("")}</tbody></table></div>
  <div class="two" style="margin-top:16px"><div class="card"><h2>Segment sizes: a</h2><table>${sizes(c.a, aName)}</table></div><div class="card"><h2>Segment sizes: b</h2><table>${sizes(c.b, bName)}</table></div></div>
  <div class="card" style="margin-top:16px"><h2>Spectrum differences</h2>${c.same_level ? `<div class="three">${spectrum || '<p class="muted">No segments correspond.</p>'}</div>` : `<p class="muted">The runs are on different levels (${esc(c.a.level)}, ${esc(c.b.level)}); compare their segments' spectra in the segment cards.</p>`}</div>
  <div class="card" style="margin-top:16px"><h2>Outlets that would move</h2>${movers ? `<table><thead><tr><th>outlet</th><th>from</th><th>to</th><th class="num">value</th><th>why</th></tr></thead><tbody>${movers}</tbody></table>${c.movers.outlets > 50 ? `<p class="muted">The 50 largest of ${num(c.movers.outlets)}.</p>` : ""}` : '<p class="muted">None.</p>'}</div>`;
}

async function route() {
  const [, view, arg, extra] = location.hash.split("/");
  const v = view || "segments";
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === v || (v === "segment" && a.dataset.view === "segments") || (v === "compare" && a.dataset.view === "drafts")));
  try {
    if (v === "segment") await viewSegment(decodeURIComponent(arg), extra);
    else if (v === "movement") await viewMovement();
    else if (v === "outlet") await viewOutlet(arg ? decodeURIComponent(arg) : "");
    else if (v === "pipeline") await viewPipeline();
    else if (v === "drafts") await viewDrafts(arg ? decodeURIComponent(arg) : "");
    else if (v === "compare") await viewCompare(decodeURIComponent(arg || ""));
    else await viewSegments();
  } catch (e) {
    main.innerHTML = `<div class="card empty">${esc(e.message)}</div>`;
  }
}

$("#token-btn").onclick = () => token(true);
window.addEventListener("hashchange", route);
loadSegmentations().then(route).catch((e) => (main.innerHTML = `<div class="card empty">${esc(e.message)}</div>`));
