// The usage page (/ui): asks for a bearer token, calls GET /v1/usage with the pickers' values and
// shows the answer three ways: a stacked bar chart per unit (uPlot), the same rows as a table
// (with a CSV download of it) and each source's status. No framework, no build step: the gateway
// serves this file as it is, under a Content-Security-Policy that allows scripts from this origin
// only, so nothing here is inline in the HTML and no element gets markup from strings.
"use strict";

(() => {
  /** sessionStorage key of the token: per tab, gone when the tab closes. */
  const TOKEN_KEY = "usage-gateway.token";
  /** Okabe–Ito: eight colours told apart with the common colour-vision deficiencies. */
  const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];
  /** Grey for the groups beyond the palette, added up as one series. */
  const OTHER_COLOR = "#8C8C8C";
  const COUNTERS = ["input_tokens", "output_tokens", "other_tokens", "total_tokens"];
  const DIMENSIONS = {
    source: "Source", provider: "Provider", agent: "Agent", user: "User",
    conversation: "Conversation", usage_type: "Usage type", model: "Model",
  };
  const UNIT_NAMES = {
    tokens: "Tokens", credits: "Credits", images: "Images", characters: "Characters",
    seconds: "Seconds", sessions: "Sessions", requests: "Requests",
  };
  const OTHER_KEY = "\u0000other";

  const $ = (id) => document.getElementById(id);
  const num = new Intl.NumberFormat();
  const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

  let answer = null; // the last successful /v1/usage body
  let unit = null; // the unit shown
  let plot = null; // the uPlot instance
  let csvUrl = null; // the object URL behind the CSV link
  let seq = 0; // request counter: an answer to an older request is dropped

  /** Builds an element; children are nodes or text (never parsed as markup). */
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") e.className = v;
      else if (k.startsWith("data-") || k.startsWith("aria-") || k === "scope") e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) e.append(c);
    return e;
  }

  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";
  const setState = (s) => { $("main").dataset.state = s; };
  const say = (text) => { $("status").textContent = text; };

  function showProblem(lines) {
    const box = $("problem");
    box.replaceChildren(...lines.map((l) => el("p", {}, l)));
    box.hidden = false;
    setState("problem");
    say("");
  }

  /** Words for an error answer: 401 and 403 say what to do about the token. */
  function problemLines(status, body) {
    const lines = [];
    if (status === 401) {
      lines.push("The gateway did not accept the token (401 Unauthorized). Enter a valid, unexpired token above.");
    } else if (status === 403) {
      lines.push("The token is valid but may not read this usage (403 Forbidden): it lacks the usage:read scope or access to a source.");
    } else {
      lines.push(`${(body && body.title) || "The request failed"} (${status}).`);
    }
    // A 400's `detail` joins its `errors`: one line for each bad parameter instead.
    const errors = (body && body.errors) || [];
    if (body && body.detail && errors.length === 0) lines.push(body.detail);
    for (const e of errors) lines.push(`${e.parameter}: ${e.message}`);
    return lines;
  }

  /** `YYYY-MM-DD` one day after `d`. */
  function nextDay(d) {
    const [y, m, day] = d.split("-").map(Number);
    return new Date(Date.UTC(y, m - 1, day + 1)).toISOString().slice(0, 10);
  }

  /** `YYYY-MM-DD` `n` days before today in `tz`, or null where the browser lacks the zone. */
  function daysAgo(n, tz) {
    try {
      const today = new Intl.DateTimeFormat("en-CA", { timeZone: tz }).format(new Date());
      const [y, m, d] = today.split("-").map(Number);
      return new Date(Date.UTC(y, m - 1, d - n)).toISOString().slice(0, 10);
    } catch {
      return null;
    }
  }

  /** The `start`/`end` of the range picker, in the forms the API takes; null while the dates of
   * a custom range are incomplete. "Last N days" starts at a local midnight (N-1 whole days and
   * today so far), so that day buckets are whole days. */
  function range(tz) {
    const choice = $("range").value;
    switch (choice) {
      case "today": return ["today", "now"];
      case "yesterday": return ["yesterday", "today"];
      case "custom": {
        const from = $("from").value;
        const to = $("to").value;
        return from && to ? [from, nextDay(to)] : null;
      }
      default: {
        const n = Number.parseInt(choice, 10) || 7;
        return [daysAgo(n - 1, tz) || `-${n}d`, "now"];
      }
    }
  }

  /** The query string for the pickers, or null while the dates are incomplete. */
  function params() {
    const tz = $("tz").value.trim() || "UTC";
    const r = range(tz);
    if (!r) return null;
    const p = new URLSearchParams({ start: r[0], end: r[1], tz });
    p.set("bucket", $("bucket").value);
    p.set("group_by", $("group").value);
    if ($("bucket").value !== "none") {
      // Every bucket present (a chart without gaps), edges written in the chosen zone.
      p.set("fill", "zero");
      p.set("bucket_edges", "local");
    }
    return p;
  }

  async function load() {
    if (!token()) {
      setState("signed-out");
      say("Enter a token to see usage.");
      return;
    }
    const p = params();
    if (!p) {
      say("Choose both dates.");
      return;
    }
    const mine = ++seq;
    setState("loading");
    say("Loading…");
    $("problem").hidden = true;
    let res;
    let body = null;
    try {
      res = await fetch(`/v1/usage?${p}`, {
        headers: { Authorization: `Bearer ${token()}`, Accept: "application/json" },
      });
      body = await res.json().catch(() => null);
    } catch (e) {
      if (mine === seq) showProblem(["The gateway could not be reached.", String(e.message || e)]);
      return;
    }
    if (mine !== seq) return;
    if (!res.ok || !body) {
      $("result").hidden = true;
      showProblem(problemLines(res.status, body));
      return;
    }
    answer = body;
    render();
  }

  /** The units in the answer, tokens first: each gets its own chart and table. */
  function units(a) {
    const set = new Set([...a.totals.map((t) => t.unit), ...a.rows.map((r) => r.unit)]);
    return [...set].sort((x, y) => (x === "tokens" ? -1 : y === "tokens" ? 1 : x.localeCompare(y)));
  }

  function render() {
    const a = answer;
    const q = a.query;
    const all = units(a);
    if (!all.includes(unit)) unit = all[0] || "tokens";
    renderUnits(all);
    const group = q.group_by[0] || "source";
    const rows = a.rows.filter((r) => r.unit === unit);
    const colours = renderChart(rows, group, q);
    renderTable(rows, group, q, colours, a.totals.find((t) => t.unit === unit));
    renderSources(a);
    $("summary").textContent =
      `${q.start} to ${q.end} (UTC); buckets: ${q.bucket}, in ${q.tz}; grouped by ${DIMENSIONS[group] || group}; ` +
      `${rows.length} of ${a.rows.length} rows in ${(UNIT_NAMES[unit] || unit).toLowerCase()}.`;
    Object.assign($("result").dataset, { start: q.start, end: q.end, tz: q.tz, bucket: q.bucket, group, unit });
    $("result").hidden = false;
    say(a.complete ? "Up to date." : "Shown with partial data: see Sources.");
    setState("ready");
  }

  function renderUnits(all) {
    const choices = all.map((u) => {
      const input = el("input", { type: "radio", name: "unit", value: u, checked: u === unit });
      input.addEventListener("change", () => { unit = u; render(); });
      return el("label", {}, input, UNIT_NAMES[u] || u);
    });
    $("unit-choices").replaceChildren(...choices);
    $("units").hidden = all.length < 2;
  }

  /** The group a row belongs to, and its label. */
  function groupOf(row, group) {
    const v = row[group];
    if (v === null || v === undefined) return { key: "", label: "(none)" };
    if (group === "agent" && row.agent_name) return { key: v, label: `${row.agent_name} · ${v.slice(0, 8)}` };
    return { key: v, label: v };
  }

  const epoch = (s) => Math.round(Date.parse(s) / 1000);

  /** A formatter of instants (in seconds) in the answer's zone, UTC where the browser lacks it:
   * as precise as the bucket, `short` for axis labels. */
  function dateFormat(tz, bucket, short) {
    const opts = { month: "short" };
    if (!short || bucket === "month") opts.year = "numeric";
    if (bucket !== "month") opts.day = "numeric";
    if (bucket === "hour" || bucket === "none") Object.assign(opts, short ? { hour: "numeric" } : { hour: "2-digit", minute: "2-digit" });
    let f;
    try {
      f = new Intl.DateTimeFormat(undefined, { ...opts, timeZone: tz });
    } catch {
      f = new Intl.DateTimeFormat(undefined, { ...opts, timeZone: "UTC" });
    }
    return (ts) => f.format(new Date(ts * 1000));
  }

  /**
   * Draws total counts per bucket as stacked bars, one series per group (the largest groups in the
   * palette's colours, the rest added up as one grey "other"). uPlot does not stack: each series
   * holds the running sum of its group and the ones below, and the bars are drawn tallest first,
   * so each visible band is one group; the legend shows the group's own value. Returns the colour
   * of each group key, for the table.
   */
  function renderChart(rows, group, q) {
    if (plot) { plot.destroy(); plot = null; }
    const xOf = (r) => epoch(r.bucket_start || q.start);
    const xs = [...new Set(rows.map(xOf))].sort((x, y) => x - y);
    const at = new Map(xs.map((x, i) => [x, i]));
    const sums = new Map();
    const labels = new Map();
    for (const r of rows) {
      const g = groupOf(r, group);
      labels.set(g.key, g.label);
      sums.set(g.key, (sums.get(g.key) || 0) + r.total_tokens);
    }
    const keys = [...sums.keys()].sort((x, y) => sums.get(y) - sums.get(x) || x.localeCompare(y));
    const shown = keys.length > PALETTE.length ? keys.slice(0, PALETTE.length - 1) : keys;
    const colours = new Map(keys.map((k) => [k, OTHER_COLOR]));
    shown.forEach((k, i) => colours.set(k, PALETTE[i]));
    const zeros = () => new Array(xs.length).fill(0);
    const series = shown.map((k) => ({ key: k, label: labels.get(k), colour: colours.get(k), values: zeros() }));
    if (keys.length > shown.length) {
      series.push({ key: OTHER_KEY, label: `other (${keys.length - shown.length} groups)`, colour: OTHER_COLOR, values: zeros() });
    }
    const index = new Map(series.map((s, i) => [s.key, i]));
    for (const r of rows) {
      const i = index.get(groupOf(r, group).key);
      series[i === undefined ? series.length - 1 : i].values[at.get(xOf(r))] += r.total_tokens;
    }
    const stacked = [];
    let below = zeros();
    for (const s of series) {
      below = below.map((v, i) => v + s.values[i]);
      stacked.push(below);
    }
    // The top of the stack first: drawn first, then covered by the groups below it.
    const order = series.map((_, i) => i).reverse();
    const fmt = dateFormat(q.tz, q.bucket, false);
    const axisFmt = dateFormat(q.tz, q.bucket, true);
    const unitName = (UNIT_NAMES[unit] || unit).toLowerCase();
    const per = q.bucket === "none" ? "range" : q.bucket;
    const by = DIMENSIONS[group] || group;
    const box = $("chart");
    box.setAttribute("aria-label",
      `Stacked bar chart of ${unitName} per ${per}, ${series.length} groups by ${by}, over ${xs.length} buckets. ` +
      "The table below lists every value.");
    const rest = keys.length > shown.length ? `; the ${shown.length} largest groups, the rest as "other"` : "";
    $("chart-caption").textContent = xs.length === 0
      ? `No ${unitName} in this range.`
      : `Total ${unitName} per ${per} (${q.tz}), stacked by ${by}${rest}. Hover for values; the table lists them all.`;
    if (xs.length === 0) {
      box.replaceChildren();
      return colours;
    }
    const bars = uPlot.paths.bars({ size: [0.8, 64], align: 0 });
    // x is the bucket's index: buckets evenly spaced, labelled by their start in the answer's
    // zone, with half a bucket of room at each end so that the end bars are whole.
    const when = (i) => (Number.isInteger(i) && i >= 0 && i < xs.length ? xs[i] : null);
    const opts = {
      width: Math.max(box.clientWidth, 320),
      height: 320,
      scales: {
        x: { time: false, range: () => [-0.5, xs.length - 0.5] },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.05 : 1] },
      },
      legend: { live: true },
      cursor: { points: { show: false } },
      series: [
        { label: q.bucket === "none" ? "Range" : "Bucket", value: (u, i) => (when(i) === null ? "–" : fmt(when(i))) },
        ...order.map((i) => ({
          label: series[i].label,
          // Outlined (light colours stay visible on white) while bars are wide enough.
          stroke: xs.length <= 120 ? "#333333" : series[i].colour,
          width: 1 / devicePixelRatio,
          fill: series[i].colour,
          paths: bars,
          points: { show: false },
          value: (u, v, si, idx) => (idx == null ? "–" : num.format(series[i].values[idx])),
        })),
      ],
      axes: [
        {
          incrs: [1, 2, 3, 4, 6, 7, 12, 14, 24, 28, 48, 168, 336, 720],
          space: q.bucket === "hour" ? 110 : 60,
          values: (u, splits) => splits.map((i) => (when(i) === null ? "" : axisFmt(when(i)))),
        },
        { label: UNIT_NAMES[unit] || unit, size: 64, values: (u, splits) => splits.map((v) => compact.format(v)) },
      ],
    };
    plot = new uPlot(opts, [xs.map((_, i) => i), ...order.map((i) => stacked[i])], box);
    return colours;
  }

  /** Fills the table with the chart's rows (the columns of `GET /v1/usage.csv`), a totals footer
   * and the CSV link. */
  function renderTable(rows, group, q, colours, total) {
    // With money, a cost column: the API's amounts per currency (decimal strings, shown as
    // given), and the total's exact sums from `totals` in the footer (never summed here).
    const money = rows.some((r) => Array.isArray(r.cost));
    const costText = (c) => (Array.isArray(c) ? c.map((m) => `${m.amount} ${m.currency}`).join("; ") : "");
    const columns = [
      ...(q.bucket !== "none" ? ["bucket_start", "bucket_end"] : []),
      group,
      ...(group === "agent" ? ["agent_name"] : []),
      "unit",
      ...COUNTERS,
      ...(money ? ["cost"] : []),
    ];
    const numeric = (c) => COUNTERS.includes(c);
    const table = $("table");
    table.tHead.replaceChildren(el("tr", {}, ...columns.map((c) => el("th", { scope: "col", class: numeric(c) ? "num" : "" }, c))));
    table.tBodies[0].replaceChildren(...rows.map((r) => el("tr", {}, ...columns.map((c) => {
      if (numeric(c)) return el("td", { class: "num" }, num.format(r[c]));
      if (c === "cost") return el("td", { class: "num" }, costText(r.cost) || (r.unpriced ? "unpriced" : ""));
      const text = r[c] === null || r[c] === undefined ? "" : String(r[c]);
      if (c !== group) return el("td", {}, text);
      const swatch = el("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.background = colours.get(groupOf(r, group).key) || OTHER_COLOR;
      return el("td", {}, swatch, text || "(none)");
    }))));
    const sums = Object.fromEntries(COUNTERS.map((c) => [c, rows.reduce((s, r) => s + r[c], 0)]));
    table.tFoot.replaceChildren(el("tr", {},
      el("th", { scope: "row", colSpan: columns.length - COUNTERS.length - (money ? 1 : 0) }, `Total (${rows.length} rows)`),
      ...COUNTERS.map((c) => el("td", { class: "num", "data-counter": c, "data-value": String(sums[c]) }, num.format(sums[c]))),
      ...(money ? [el("td", { class: "num", "data-cost": "" }, costText(total && total.cost) +
        (total && total.unpriced ? ` (${num.format(total.unpriced)} unpriced)` : ""))] : [])));
    // CSV of exactly these rows, text cells guarded against spreadsheet formulas as the API's are.
    const cell = (v) => {
      let s = v === null || v === undefined ? "" : String(v);
      if (typeof v === "string" && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
      return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
    };
    const lines = [columns.join(","), ...rows.map((r) => columns.map((c) => cell(c === "cost" ? costText(r.cost) : r[c])).join(","))];
    if (csvUrl) URL.revokeObjectURL(csvUrl);
    csvUrl = URL.createObjectURL(new Blob([`${lines.join("\r\n")}\r\n`], { type: "text/csv" }));
    const link = $("csv");
    link.href = csvUrl;
    link.download = `usage-${unit}-${group}-${q.start.slice(0, 10)}-${q.end.slice(0, 10)}.csv`;
  }

  /** Each source's status beside the chart, so that partial data is visible. */
  function renderSources(a) {
    const p = $("completeness");
    p.textContent = a.complete
      ? "Complete: every source answered."
      : "Partial: not every source answered, so the figures may be low.";
    p.className = a.complete ? "" : "partial";
    $("source-list").replaceChildren(...a.sources.map((s) => {
      const details = [s.provider];
      if (typeof s.store_coverage === "number") details.push(`store coverage ${Math.round(s.store_coverage * 100)}%`);
      if (s.status === "stale" && typeof s.age_seconds === "number") details.push(`data ${Math.round(s.age_seconds / 60)} min old`);
      if (s.cached) details.push("from cache");
      if (s.cost_source && s.cost_source !== "none") details.push(`cost from ${s.cost_source === "vendor" ? "the vendor" : "the price table"}`);
      const lines = [el("span", { class: "detail" }, details.join(" · "))];
      if (s.error) lines.push(el("span", { class: "detail" }, `${s.error.title}: ${s.error.detail}`));
      for (const n of s.notes || []) lines.push(el("span", { class: "detail" }, n));
      return el("li", { "data-source": s.source, "data-status": s.status },
        el("span", { class: "name" }, s.source), el("span", { class: `badge ${s.status}` }, s.status), ...lines);
    }));
  }

  /** Offers the browser's zones in the time-zone picker, its own first and chosen. */
  function zones() {
    const here = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    const all = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
    $("tz-list").replaceChildren(...[...new Set([here, "UTC", ...all])].map((z) => el("option", { value: z })));
    $("tz").value = here;
  }

  function tokenHint(text) {
    $("token-hint").textContent = text;
  }

  function start() {
    zones();
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const t = $("token").value.trim();
      if (!t) return;
      sessionStorage.setItem(TOKEN_KEY, t);
      $("token").value = "";
      tokenHint("A token is set for this tab. Enter another to replace it.");
      load();
    });
    $("forget-token").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      answer = null;
      $("result").hidden = true;
      $("problem").hidden = true;
      tokenHint("Forgotten. Tokens are kept in this tab's session storage only, never in the address or a cookie.");
      load();
    });
    $("query").addEventListener("submit", (e) => { e.preventDefault(); load(); });
    $("range").addEventListener("change", () => {
      $("custom-range").hidden = $("range").value !== "custom";
      load();
    });
    for (const id of ["from", "to", "bucket", "tz", "group"]) $(id).addEventListener("change", load);
    new ResizeObserver(() => {
      if (plot) plot.setSize({ width: Math.max($("chart").clientWidth, 320), height: 320 });
    }).observe($("chart-figure"));
    if (token()) tokenHint("A token is set for this tab. Enter another to replace it.");
    load();
  }

  start();
})();
