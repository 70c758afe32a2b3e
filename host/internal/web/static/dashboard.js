// The dynworkers dashboard. It polls the host's HTTP API (GET /v1/status,
// GET /v1/events and, on a host of a cluster, GET /v1/cluster) and renders
// the supervision tree, the host's figures, the recent events and the
// cluster's hosts and workers; its buttons and form call the same API. A
// worker's "logs" button opens a pane that follows its log live (GET
// /v1/workers/NAME/logs?follow=1).
//
// Everything shown comes from the API and goes into the page as text
// (textContent and DOM attributes), never as HTML: worker names, and the
// details a worker reports about itself, may hold quotes and angle brackets. The bearer token, when the host has one, is
// asked for once and kept in sessionStorage, and sent on every call.
"use strict";

(() => {
  const POLL_MS = 1500; // time between two polls
  const SAMPLES = 60; // sparkline samples kept per worker
  const MAX_EVENTS = 100; // events shown
  const MAX_VALUE = 80; // characters of a details value shown; its title has it all
  const TOKEN_KEY = "dynworkers.token";
  // How long the page waits before asking again a host that said it is
  // not part of a cluster: its cluster block only comes with a restart,
  // and every refusal is a line in the host's log.
  const NO_CLUSTER_RECHECK_MS = 60000;
  const SVG_NS = "http://www.w3.org/2000/svg";

  const $ = (id) => document.getElementById(id);

  // el makes an element. props are set as properties, except names with a
  // dash (data-*, aria-*), which are attributes; children that are strings
  // or numbers become text nodes, null and undefined are skipped.
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === undefined || v === null) continue;
      if (k.includes("-")) e.setAttribute(k, String(v));
      else e[k] = v;
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function svg(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  // setText changes a node's text only when it differs, so that a
  // selection or a scroll position survives the next poll.
  function setText(node, text) {
    const s = text === undefined || text === null ? "" : String(text);
    if (node.textContent !== s) node.textContent = s;
  }

  // replaceIfChanged puts want as parent's children, in that order, and
  // touches the DOM only when they differ: a button under the pointer must
  // not be detached between the press and the release of a click.
  function replaceIfChanged(parent, want) {
    const have = parent.children;
    if (have.length === want.length && want.every((n, i) => have[i] === n)) return;
    parent.replaceChildren(...want);
  }

  // ---- formatting ------------------------------------------------------

  const pad = (n, w = 2) => String(n).padStart(w, "0");

  function fmtBytes(n) {
    if (typeof n !== "number") return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
  }

  function fmtDuration(sec) {
    if (typeof sec !== "number" || !isFinite(sec) || sec < 0) return "—";
    sec = Math.floor(sec);
    const d = Math.floor(sec / 86400), h = Math.floor(sec % 86400 / 3600);
    const m = Math.floor(sec % 3600 / 60), s = sec % 60;
    if (d > 0) return `${d}d ${h}h`;
    if (h > 0) return `${h}h ${pad(m)}m`;
    if (m > 0) return `${m}m ${pad(s)}s`;
    return `${s}s`;
  }

  // fmtPeriod shows a supervisor's period: "30s", "1m", "1m30s".
  function fmtPeriod(sec) {
    if (typeof sec !== "number" || !isFinite(sec)) return "—";
    const m = Math.floor(sec / 60), s = +(sec % 60).toFixed(3);
    return (m ? m + "m" : "") + (s || !m ? s + "s" : "");
  }

  function fmtPercent(p) {
    return typeof p === "number" ? p.toFixed(1) + " %" : "—";
  }

  function fmtCPUSeconds(s) {
    return typeof s === "number" ? s.toFixed(2) + " s" : "—";
  }

  // fmtTime shows a timestamp as local HH:MM:SS (with milliseconds when
  // asked); the full time is in the element's title.
  function fmtTime(iso, ms) {
    if (!iso) return "";
    const t = new Date(iso);
    if (isNaN(t)) return String(iso);
    let s = `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
    if (ms) s += "." + pad(t.getMilliseconds(), 3);
    return s;
  }

  // detailPairs turns a worker's details (its own Status() answer, a JSON
  // object) into [key, text] pairs sorted by key: strings as they are,
  // anything else as JSON. Something other than an object is one pair.
  function detailPairs(d) {
    if (d === undefined || d === null) return [];
    if (typeof d !== "object" || Array.isArray(d)) return [["details", JSON.stringify(d)]];
    return Object.keys(d).sort().map((k) => [k, typeof d[k] === "string" ? d[k] : JSON.stringify(d[k])]);
  }

  // kvNode shows one pair as "key=value", the value cut at MAX_VALUE
  // characters (the title then has it whole). Both are text: a worker's
  // details are whatever its plugin says.
  function kvNode([k, text]) {
    const chars = Array.from(text);
    const cut = chars.length > MAX_VALUE ? chars.slice(0, MAX_VALUE - 1).join("") + "…" : text;
    return el("span", { className: "kv", title: cut !== text ? text : undefined },
      el("span", { className: "k" }, k), "=", el("span", { className: "v" }, cut));
  }

  // kvNodes shows pairs a space apart, so that copied text reads too.
  function kvNodes(pairs) {
    return pairs.flatMap((p, i) => (i ? [" ", kvNode(p)] : [kvNode(p)]));
  }

  // stateClass maps a worker's or supervisor's state to its colour.
  function stateClass(state) {
    switch (state) {
      case "running": return "st-ok";
      case "starting": case "backoff": return "st-warn";
      case "failed": return "st-bad";
      default: return "st-idle"; // stopping, stopped, exited, unknown
    }
  }

  function eventClass(name) {
    if (/_(failed|start_failed)$/.test(name) || name === "supervisor_escalated") return "st-bad";
    if (/_(exited|restarting)$/.test(name)) return "st-warn";
    if (/_started$/.test(name)) return "st-ok";
    return "st-idle";
  }

  // ---- the API ---------------------------------------------------------

  class APIError extends Error {
    constructor(code, message, status, details) {
      super(message);
      this.code = code;
      this.status = status;
      this.details = details || [];
    }
    // describe is the message with its details (attribute: summary).
    describe() {
      const extra = this.details
        .filter((d) => d && d.summary && d.summary !== this.message)
        .map((d) => (d.attribute ? d.attribute + ": " : "") + d.summary);
      return [this.message, ...extra].join("; ");
    }
  }

  let token = sessionStorage.getItem(TOKEN_KEY) || "";

  function setToken(t) {
    token = t;
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
    $("forget-token").hidden = !t;
  }

  // api calls the host and returns the reply's result, or throws an
  // APIError with the reply's error.
  //
  // Every call carries X-Dynworkers-Request: the API refuses a POST or
  // DELETE without it (or a token), which is what a form or a page of
  // another origin would send. The referrer policy "same-origin" makes the
  // browser send this page's origin in the Origin header (the page's own
  // Referrer-Policy, no-referrer, would make it "null"); the API checks it.
  async function api(method, path, body) {
    const headers = { Accept: "application/json", "X-Dynworkers-Request": "1" };
    if (token) headers.Authorization = "Bearer " + token;
    const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(path, init);
    } catch (e) {
      throw new APIError("unreachable", "the host does not answer (" + e.message + ")", 0);
    }
    let rep;
    try {
      rep = await resp.json();
    } catch (e) {
      throw new APIError("malformed", `HTTP ${resp.status}: the answer is not JSON`, resp.status);
    }
    if (!rep || rep.ok !== true) {
      const err = (rep && rep.error) || {};
      throw new APIError(err.code || "internal", err.message || `HTTP ${resp.status}`, resp.status, err.details);
    }
    return rep.result;
  }

  // ---- polling ---------------------------------------------------------

  let timer = 0;
  let polling = false;
  let again = false; // a refresh was asked for while a poll ran
  let classesLoaded = false;

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  // refresh polls now, or right after the poll in flight.
  function refresh() {
    if (polling) again = true;
    else schedule(0);
  }

  async function poll() {
    if (polling) { again = true; return; }
    polling = true;
    let next = POLL_MS; // -1: wait for the token form
    try {
      const [status, events, cluster] = await Promise.all([
        api("GET", "/v1/status"),
        // A host without an event log answers not_found: show the rest.
        api("GET", "/v1/events").catch((e) => {
          if (e.code === "not_found") return null;
          throw e;
        }),
        fetchCluster(),
      ]);
      showDashboard();
      renderStatus(status);
      renderEvents(events === null ? null : events.events || []);
      renderCluster(cluster);
      setConn(true, "live · " + fmtTime(new Date().toISOString()));
      if (!classesLoaded) loadClasses();
    } catch (e) {
      if (e.code === "unauthorized") {
        // A token that was refused is dropped: the form asks again.
        const msg = token ? e.message : "";
        if (token) setToken("");
        showLogin(msg);
        next = -1;
      } else {
        setConn(false, e.message);
        next = POLL_MS * 2;
      }
    } finally {
      polling = false;
    }
    if (next < 0) { again = false; return; }
    if (again) { again = false; next = 0; }
    schedule(next);
  }

  async function loadClasses() {
    classesLoaded = true;
    try {
      const res = await api("GET", "/v1/classes");
      const names = new Set();
      for (const c of res.classes || []) {
        names.add(c.name);
        for (const a of c.aliases || []) names.add(a);
      }
      $("classes").replaceChildren(...[...names].sort().map((n) => el("option", { value: n })));
    } catch (e) {
      classesLoaded = false; // try again at the next poll
    }
  }

  function setConn(ok, text) {
    const c = $("conn");
    c.className = "conn " + (ok ? "conn-ok" : "conn-bad");
    setText(c, text);
  }

  function showDashboard() {
    $("login").hidden = true;
    $("dash").hidden = false;
  }

  function showLogin(message) {
    clearTimeout(timer);
    const wasHidden = $("login").hidden;
    $("dash").hidden = true;
    $("login").hidden = false;
    const le = $("login-error");
    le.hidden = !message;
    setText(le, message);
    setConn(false, "token needed");
    if (wasHidden) $("token").focus();
  }

  // ---- status: header --------------------------------------------------

  const history = new Map(); // worker name -> {rss: [], cpu: []}
  let lastSample = "";

  function renderStatus(s) {
    const p = s.process || {};
    const facts = [
      ["system", s.system_id],
      ["host", s.host],
      ["broker", s.broker || "none"],
      ["uptime", fmtDuration(p.uptime_seconds)],
      ["host pid", p.pid],
      ["host RSS", fmtBytes(p.rss_bytes)],
      ["host CPU", fmtCPUSeconds(p.cpu_seconds)],
      ["threads / fds", `${p.threads ?? "—"} / ${p.open_fds ?? "—"}`],
      ["control", `${p.control_handled ?? 0} handled, ${p.control_failed ?? 0} failed`],
    ];
    // Warm spares: plugin processes launched ahead of need, of no worker.
    const spares = (s.spares || []).filter((sp) => sp.ready > 0);
    if (spares.length > 0) {
      facts.push(["warm spares", spares.map((sp) =>
        `${String(sp.binary).split("/").pop()} ${sp.ready} (pid ${(sp.pids || []).join(", ")})`).join("; ")]);
    }
    $("facts").replaceChildren(...facts.map(([k, v]) =>
      el("div", { className: "fact" }, el("dt", {}, k), el("dd", {}, v ?? "—"))));
    if (s.host) document.title = `dynworkers · ${s.host}`;

    const workers = s.workers || [];
    const byState = p.workers_by_state || {};
    const chips = [el("span", { className: "chip" }, `${workers.length} workers`)];
    for (const st of Object.keys(byState).sort()) {
      if (byState[st] > 0) chips.push(el("span", { className: "chip " + stateClass(st) }, `${byState[st]} ${st}`));
    }
    $("by-state").replaceChildren(...chips);

    // One sample per host sample: polls faster than the host samples do
    // not repeat a point.
    if (p.sampled_at !== lastSample) {
      lastSample = p.sampled_at;
      for (const w of workers) {
        if (!w.metrics) continue;
        let h = history.get(w.name);
        if (!h) history.set(w.name, (h = { rss: [], cpu: [] }));
        h.rss.push(w.metrics.rss_bytes);
        h.cpu.push(w.metrics.cpu_percent);
        if (h.rss.length > SAMPLES) h.rss.shift();
        if (h.cpu.length > SAMPLES) h.cpu.shift();
      }
    }
    const names = new Set(workers.map((w) => w.name));
    for (const n of history.keys()) if (!names.has(n)) history.delete(n);

    renderTree(s.supervisors || [], workers);

    const paths = (s.supervisors || []).map((x) => x.path);
    const dl = $("supervisors");
    if (dl.dataset.paths !== paths.join("\n")) {
      dl.dataset.paths = paths.join("\n");
      dl.replaceChildren(...paths.map((x) => el("option", { value: x })));
    }
  }

  // ---- status: the tree ------------------------------------------------

  const supViews = new Map(); // supervisor path -> view
  const rowViews = new Map(); // worker name -> view

  function makeSupView(path) {
    const v = {
      path,
      title: el("span", { className: "sup-path" }),
      badge: el("span", { className: "badge" }),
      meta: el("span", { className: "sup-meta" }),
      totals: el("span", { className: "sup-totals" }),
      failure: el("div", { className: "error sup-failure" }),
      tbody: el("tbody"),
      subs: el("div", { className: "subs" }),
    };
    v.table = el("table", { className: "workers" },
      el("thead", {}, el("tr", {}, ...["state", "worker", "pid", "uptime", "restarts", "last exit",
        "source", "RSS", "CPU", ""].map((h) => el("th", {}, h)))),
      v.tbody);
    v.root = el("section", { className: "sup", "data-supervisor": path },
      el("div", { className: "sup-head" }, v.badge, v.title, v.meta, v.totals), v.failure, v.table, v.subs);
    return v;
  }

  function updateSupView(v, sup) {
    setText(v.title, sup.path);
    v.badge.className = "badge " + stateClass(sup.state);
    setText(v.badge, sup.state || "unknown");
    const meta = [];
    if (sup.strategy) meta.push(sup.strategy);
    if (typeof sup.intensity === "number") {
      meta.push(`restarts ${sup.restarts_in_period ?? 0}/${sup.intensity} in ${fmtPeriod(sup.period)}`);
    }
    if (sup.restarts) meta.push(`restarted ${sup.restarts}×`);
    if (sup.source) meta.push(sup.source);
    setText(v.meta, meta.join(" · "));
    const t = sup.totals;
    setText(v.totals, t ? `${t.running}/${t.workers} running · RSS ${fmtBytes(t.rss_bytes)} · CPU ${fmtCPUSeconds(t.cpu_seconds)}` : "");
    v.failure.hidden = !sup.failure;
    setText(v.failure, sup.failure ? `failed ${fmtTime(sup.failed_at)}: ${sup.failure}` : "");
  }

  function makeRowView(name) {
    const v = {
      name,
      badge: el("span", { className: "badge" }),
      nameText: el("span", { className: "w-name" }),
      classText: el("span", { className: "w-class" }),
      configPre: el("pre"),
      pid: el("td", { className: "pid num" }),
      uptime: el("td", { className: "uptime num" }),
      restarts: el("td", { className: "restarts num" }),
      lastExit: el("td", { className: "last-exit" }),
      source: el("td", { className: "source" }),
      rssText: el("span", { className: "num" }),
      cpuText: el("span", { className: "num" }),
      rssLine: svg("polyline"),
      cpuLine: svg("polyline"),
      restart: el("button", { type: "button", className: "restart", title: "restart this worker" }, "restart"),
      stop: el("button", { type: "button", className: "stop", title: "stop this worker" }, "stop"),
      logs: el("button", { type: "button", className: "logs", title: "show this worker's log, following it live" }, "logs"),
    };
    v.config = el("details", { className: "config" }, el("summary", {}, "config"), v.configPre);
    // The worker's details go on a line of their own under its row, and
    // details_error (why there are none) in the warning colour.
    v.detailsList = el("div", { className: "kv-list" });
    v.detailsError = el("div", { className: "details-error" });
    v.detailsTr = el("tr", { className: "worker-details", "data-details-of": name, hidden: true },
      el("td"), el("td", { colSpan: 9 }, v.detailsList, v.detailsError));
    const spark = (line, label) => {
      const s = svg("svg", { class: "spark", viewBox: "0 0 80 20", width: 80, height: 20, role: "img", "aria-label": label });
      s.append(line);
      return s;
    };
    v.rssSpark = spark(v.rssLine, "RSS over time");
    v.cpuSpark = spark(v.cpuLine, "CPU over time");
    v.restart.addEventListener("click", () => act(v, "restart"));
    v.stop.addEventListener("click", () => act(v, "stop"));
    v.logs.addEventListener("click", () => openLogs(name));
    v.tr = el("tr", { className: "worker", "data-worker": name },
      el("td", { className: "state" }, v.badge),
      el("td", { className: "name" }, v.nameText, v.classText, v.config),
      v.pid, v.uptime, v.restarts, v.lastExit, v.source,
      el("td", { className: "rss" }, v.rssText, v.rssSpark),
      el("td", { className: "cpu" }, v.cpuText, v.cpuSpark),
      el("td", { className: "actions" }, v.logs, v.restart, v.stop));
    return v;
  }

  function updateRowView(v, w) {
    v.badge.className = "badge " + stateClass(w.state);
    setText(v.badge, w.state);
    setText(v.nameText, w.name);
    setText(v.classText, w.class);
    setText(v.pid, w.pid || "—");
    const m = w.metrics;
    setText(v.uptime, m ? fmtDuration(m.uptime_seconds) : "—");
    setText(v.restarts, w.restarts ?? 0);
    setText(v.lastExit, w.last_exit ? w.last_exit : "");
    v.lastExit.title = w.last_exit_at ? "at " + w.last_exit_at : "";
    setText(v.source, w.source);
    setText(v.rssText, m ? fmtBytes(m.rss_bytes) : "—");
    setText(v.cpuText, m ? fmtPercent(m.cpu_percent) : "—");
    const h = history.get(w.name) || { rss: [], cpu: [] };
    drawSpark(v.rssLine, v.rssSpark, h.rss, false, fmtBytes);
    drawSpark(v.cpuLine, v.cpuSpark, h.cpu, true, fmtPercent);
    v.config.hidden = !w.config;
    if (w.config) setText(v.configPre, JSON.stringify(w.config, null, 2));
    updateDetails(v, w);
    if (!v.busy) {
      // A hybrid's child belongs to its hybrid: the host refuses to
      // restart or stop it, so the buttons say so instead of failing.
      const owned = w.source === "hybrid";
      v.restart.disabled = owned;
      v.stop.disabled = owned || w.state === "stopped" || w.state === "stopping";
      v.restart.title = owned ? `managed by hybrid worker ${w.owner || ""}: restart it instead` : "restart this worker";
      v.stop.title = owned ? `managed by hybrid worker ${w.owner || ""}: stop it instead` : "stop this worker";
    }
  }

  // updateDetails shows a worker's details and details_error, rebuilding
  // the line only when they changed.
  function updateDetails(v, w) {
    const sig = JSON.stringify([w.details ?? null, w.details_error || ""]);
    if (v.detailsSig === sig) return;
    v.detailsSig = sig;
    const pairs = detailPairs(w.details);
    v.detailsList.replaceChildren(...kvNodes(pairs));
    v.detailsList.hidden = pairs.length === 0;
    v.detailsError.hidden = !w.details_error;
    setText(v.detailsError, w.details_error ? "details: " + w.details_error : "");
    v.detailsTr.hidden = pairs.length === 0 && !w.details_error;
    v.tr.classList.toggle("has-details", !v.detailsTr.hidden);
  }

  // drawSpark draws the samples as a polyline, newest at the right edge.
  // CPU (fromZero) is drawn from 0 to its largest sample (at least 1 %);
  // RSS between its smallest and largest, so that a few pages more show
  // (a flat line sits in the middle).
  function drawSpark(line, box, values, fromZero, fmt) {
    const W = 80, H = 20, step = W / (SAMPLES - 1);
    const n = values.length;
    const hi = Math.max(...values), lo = Math.min(...values);
    let y;
    if (fromZero) {
      const top = Math.max(hi, 1);
      y = (v) => H - 2 - (v / top) * (H - 4);
    } else {
      const mid = (hi + lo) / 2, span = Math.max(hi - lo, hi * 0.02, 1);
      y = (v) => H / 2 - ((v - mid) / span) * (H - 4);
    }
    const pts = values.map((v, i) => `${(W - (n - 1 - i) * step).toFixed(1)},${y(v).toFixed(1)}`);
    line.setAttribute("points", n > 1 ? pts.join(" ") : "");
    let title = box.querySelector("title");
    if (!title) box.prepend((title = svg("title")));
    setText(title, n ? `last ${n} samples: min ${fmt(lo)}, max ${fmt(hi)}` : "no samples yet");
  }

  function renderTree(sups, workers) {
    const tree = $("tree");
    const all = sups.slice();
    const known = new Set(all.map((x) => x.path));
    for (const w of workers) {
      if (!known.has(w.supervisor)) {
        all.push({ path: w.supervisor, state: "unknown" });
        known.add(w.supervisor);
      }
    }
    const want = new Map([[tree, []]]); // container -> its children, in order
    const add = (container, node) => {
      if (!want.has(container)) want.set(container, []);
      want.get(container).push(node);
    };
    for (const sup of all) {
      let v = supViews.get(sup.path);
      if (!v) supViews.set(sup.path, (v = makeSupView(sup.path)));
      updateSupView(v, sup);
      // Supervisors come in tree order: a parent is made before its children.
      const parent = sup.parent && supViews.get(sup.parent);
      add(parent && known.has(sup.parent) ? parent.subs : tree, v.root);
    }
    for (const w of workers) {
      let v = rowViews.get(w.name);
      if (!v) rowViews.set(w.name, (v = makeRowView(w.name)));
      updateRowView(v, w);
      add(supViews.get(w.supervisor).tbody, v.tr);
      add(supViews.get(w.supervisor).tbody, v.detailsTr);
    }
    for (const [path, v] of supViews) {
      if (!known.has(path)) { v.root.remove(); supViews.delete(path); continue; }
      replaceIfChanged(v.subs, want.get(v.subs) || []);
      replaceIfChanged(v.tbody, want.get(v.tbody) || []);
      v.table.hidden = !want.has(v.tbody);
    }
    const names = new Set(workers.map((w) => w.name));
    for (const [name, v] of rowViews) {
      if (!names.has(name)) { v.tr.remove(); v.detailsTr.remove(); rowViews.delete(name); }
    }
    replaceIfChanged(tree, want.get(tree));
  }

  // ---- events ----------------------------------------------------------

  let lastEvents = "";

  function renderEvents(list) {
    const empty = $("events-empty");
    if (list === null) {
      $("events").replaceChildren();
      empty.hidden = false;
      setText(empty, "This host keeps no event log.");
      return;
    }
    const evs = list.slice(-MAX_EVENTS).reverse();
    const sig = list.length + "|" + JSON.stringify(evs[0] || null);
    if (sig === lastEvents) return;
    lastEvents = sig;
    empty.hidden = evs.length > 0;
    setText(empty, "No events yet.");
    setText($("events-count"), evs.length ? `(${evs.length}, newest first)` : "");
    $("events").replaceChildren(...evs.map((ev) => {
      const details = [];
      if (ev.pid) details.push(`pid ${ev.pid}`);
      if (ev.attempt) details.push(`attempt ${ev.attempt}`);
      if (typeof ev.delay_seconds === "number" && ev.delay_seconds > 0) details.push(`in ${ev.delay_seconds.toFixed(2)} s`);
      if (ev.restarts) details.push(`restarts ${ev.restarts}`);
      if (ev.reason) details.push(String(ev.reason));
      if (typeof ev.uptime_seconds === "number") details.push(`after ${fmtDuration(ev.uptime_seconds)}`);
      const name = String(ev.event || "");
      return el("tr", { className: "event", "data-event": name },
        el("td", { className: "ev-time num", title: ev.time }, fmtTime(ev.time, true)),
        el("td", {}, el("span", { className: "badge " + eventClass(name) }, name)),
        el("td", { className: "ev-worker" }, ev.worker ?? ev.child ?? ""),
        el("td", { className: "ev-supervisor" }, ev.supervisor ?? ""),
        el("td", { className: "ev-details" }, details.join(" · "),
          ev.error ? el("div", { className: "error" }, String(ev.error)) : null));
    }));
  }

  // ---- cluster ---------------------------------------------------------

  // noClusterUntil: after a host said it is not part of a cluster, the
  // time to ask again; noCluster is what it said.
  let noClusterUntil = 0;
  let noCluster = null;

  // fetchCluster returns the cluster view, {none: message} for a host that
  // is not part of a cluster (409 conflict) or does not know cluster mode
  // (an older host: unknown_operation, or not_found for the route), or
  // {error: message} when the call failed otherwise (the rest of the page
  // still shows).
  async function fetchCluster() {
    if (noCluster && Date.now() < noClusterUntil) return noCluster;
    try {
      const view = await api("GET", "/v1/cluster");
      noCluster = null;
      return view;
    } catch (e) {
      if (e.code === "unauthorized") throw e;
      if (e.code === "conflict" || e.code === "unknown_operation" || e.code === "not_found") {
        noCluster = { none: e.code === "conflict" ? e.message : "this host does not know cluster mode" };
        noClusterUntil = Date.now() + NO_CLUSTER_RECHECK_MS;
        return noCluster;
      }
      return { error: e.message };
    }
  }

  const yesNo = (b) => (b ? "yes" : "no");

  // since shows how long ago an RFC 3339 time was, "—" for none.
  function since(iso) {
    if (!iso || iso.startsWith("0001-")) return "—";
    const t = Date.parse(iso);
    return isNaN(t) ? "—" : fmtDuration((Date.now() - t) / 1000);
  }

  function clusterState(state) {
    if (state === "pending" || state === "moving") return "st-warn";
    return stateClass(state);
  }

  function labelsText(labels) {
    const keys = Object.keys(labels || {}).sort();
    return keys.length ? keys.map((k) => `${k}=${labels[k]}`).join(", ") : "—";
  }

  // workerHost is where a cluster worker is: "A → B" while it moves from
  // A to the host B it is placed on.
  function workerHost(w) {
    if (w.running_on && w.host && w.running_on !== w.host) return `${w.running_on} → ${w.host}`;
    return w.running_on || w.host || "—";
  }

  let lastCluster = "";
  const hostViews = new Map(); // host name -> view

  function makeHostView(name) {
    const v = { name, busy: false };
    const cell = (cls) => el("td", { className: cls });
    v.cells = {
      alive: cell("c-alive"), draining: cell("c-draining"), leader: cell("c-leader"),
      capacity: cell("c-capacity num"), assigned: cell("c-assigned num"), load: cell("c-load num"), labels: cell("c-labels"),
    };
    v.button = el("button", { type: "button", className: "drain" });
    v.button.addEventListener("click", () => drainHost(v));
    v.row = el("tr", { className: "c-host", "data-host": name }, el("td", { className: "c-name" }, name),
      v.cells.alive, v.cells.draining, v.cells.leader, v.cells.capacity, v.cells.assigned, v.cells.load, v.cells.labels,
      el("td", { className: "actions" }, v.button));
    return v;
  }

  // badgeIn puts a badge with text and class cls in td, or plain text when
  // cls is "".
  function badgeIn(td, text, cls) {
    const have = td.firstElementChild;
    if (!cls) {
      if (have || td.textContent !== text) td.replaceChildren(text);
      return;
    }
    if (have && have.textContent === text && have.className === "badge " + cls) return;
    td.replaceChildren(el("span", { className: "badge " + cls }, text));
  }

  function updateHostView(v, h) {
    v.draining = !!h.draining;
    badgeIn(v.cells.alive, h.alive ? "alive" : "dead", h.alive ? "st-ok" : "st-bad");
    badgeIn(v.cells.draining, h.draining ? "draining" : "no", h.draining ? "st-warn" : "");
    setText(v.cells.leader, yesNo(h.leader));
    setText(v.cells.capacity, h.capacity > 0 ? h.capacity : "no limit");
    setText(v.cells.assigned, h.assigned ?? 0);
    setText(v.cells.load, h.load ?? 0);
    setText(v.cells.labels, labelsText(h.labels));
    setText(v.button, h.draining ? "undrain" : "drain");
    v.button.disabled = v.busy;
  }

  async function drainHost(v) {
    const on = !v.draining;
    const name = v.name;
    if (on && !window.confirm(`Drain host "${name}"? Its cluster workers move to other hosts, one at a time, and it takes no new ones until undrained.`)) return;
    v.busy = true;
    v.button.disabled = true;
    try {
      const res = await api("POST", "/v1/cluster/hosts/" + encodeURIComponent(name) + (on ? "/drain" : "/undrain"));
      const left = (res && res.workers) || [];
      notice(on ? `Draining ${name}: ${left.length ? left.length + " cluster workers to move" : "no cluster worker on it"}.`
        : `Undrained ${name}: it takes new cluster workers again.`, true);
    } catch (e) {
      if (e.code === "unauthorized") showLogin(e.message);
      else notice(`Could not ${on ? "drain" : "undrain"} ${name}: ${e.describe ? e.describe() : e.message}`, false);
    } finally {
      v.busy = false;
      v.button.disabled = false;
      lastCluster = "";
      refresh();
    }
  }

  function renderCluster(c) {
    const panel = $("cluster");
    const none = $("cluster-none");
    const body = $("cluster-body");
    panel.hidden = false;
    if (c.none) $("start-cluster-fields").hidden = true;
    else if (!c.error) $("start-cluster-fields").hidden = false;
    if (c.none || c.error) {
      lastCluster = "";
      body.hidden = true;
      none.hidden = false;
      setText($("cluster-summary"), "");
      none.className = c.error ? "error" : "muted";
      setText(none, c.error ? "The cluster view failed: " + c.error
        : c.none.startsWith("this host is not part of a cluster") ? "This host is not part of a cluster."
          : "This host is not part of a cluster: " + c.none);
      return;
    }
    none.hidden = true;
    body.hidden = false;
    const hosts = c.hosts || [];
    const workers = c.workers || [];
    const alive = hosts.filter((h) => h.alive).length;
    setText($("cluster-summary"), `(${c.system_id || c.prefix || "?"} · leader ${c.leader || "none"} · ` +
      `${alive}/${hosts.length} hosts alive · ${workers.length} workers · read by ${c.from || "?"})`);
    // Rebuild the tables only when the data changed, so that a selection
    // survives the polls; the "since" column is updated in place.
    const sig = JSON.stringify([hosts, workers]);
    if (sig === lastCluster) {
      for (const td of $("cluster-workers").querySelectorAll("td.c-since")) setText(td, since(td.title));
      return;
    }
    lastCluster = sig;
    // Host rows are kept and updated in place: a drain button under the
    // pointer must not be replaced between the press and the release.
    const seen = new Set();
    replaceIfChanged($("cluster-hosts"), hosts.map((h) => {
      seen.add(h.name);
      let v = hostViews.get(h.name);
      if (!v) hostViews.set(h.name, (v = makeHostView(h.name)));
      updateHostView(v, h);
      return v.row;
    }));
    for (const n of hostViews.keys()) if (!seen.has(n)) hostViews.delete(n);
    $("cluster-no-workers").hidden = workers.length > 0;
    $("cluster-workers").replaceChildren(...workers.map((w) =>
      el("tr", { className: "c-worker", "data-worker": w.name },
        el("td", { className: "c-name" }, w.name),
        el("td", { className: "c-class" }, w.class),
        el("td", { className: "c-where" }, workerHost(w)),
        el("td", { className: "c-state" }, el("span", { className: "badge " + clusterState(w.state) }, w.state || "—")),
        el("td", { className: "c-pid num" }, w.pid || "—"),
        el("td", { className: "c-since num", title: w.since || "" }, since(w.since)),
        el("td", { className: "c-moves num" }, w.moves ?? 0),
        el("td", { className: "c-pending" }, w.pending || (w.error ? "error: " + w.error : "")))));
  }

  // ---- a worker's log ----------------------------------------------------

  // The log pane shows a worker's last lines and follows its log live
  // through the API's NDJSON stream (GET /v1/workers/NAME/logs?follow=1),
  // read with fetch and a ReadableStream: EventSource could not send the
  // bearer token. Log lines are whatever the worker wrote: they go into
  // the page as text only.
  const LOG_LINES = 200; // lines asked for when the pane opens
  const MAX_LOG_ROWS = 2000; // rows kept in the pane
  let logView = null; // {name, ctrl}: the pane's worker and its fetch

  function openLogs(name) {
    closeLogs();
    const v = { name, ctrl: new AbortController() };
    logView = v;
    setText($("log-worker"), name);
    $("log-lines").replaceChildren();
    $("logpane").hidden = false;
    followLogs(v);
    $("logpane").scrollIntoView({ block: "nearest" });
  }

  // closeLogs hides the pane and aborts its fetch, which ends the stream.
  function closeLogs() {
    if (logView) logView.ctrl.abort();
    logView = null;
    $("logpane").hidden = true;
  }

  function logState(v, text, bad) {
    if (logView !== v) return;
    const s = $("log-state");
    s.className = bad ? "error" : "";
    setText(s, text);
  }

  async function followLogs(v) {
    const headers = { Accept: "application/x-ndjson, application/json", "X-Dynworkers-Request": "1" };
    if (token) headers.Authorization = "Bearer " + token;
    logState(v, "(loading…)");
    let resp;
    try {
      resp = await fetch(`/v1/workers/${encodeURIComponent(v.name)}/logs?follow=1&lines=${LOG_LINES}`, {
        method: "GET", headers, cache: "no-store", credentials: "omit", referrerPolicy: "same-origin", signal: v.ctrl.signal,
      });
    } catch (e) {
      if (!v.ctrl.signal.aborted) logState(v, "(the host does not answer: " + e.message + ")", true);
      return;
    }
    const ctype = resp.headers.get("Content-Type") || "";
    if (!resp.ok || !ctype.startsWith("application/x-ndjson")) {
      let err = {};
      try { err = ((await resp.json()) || {}).error || {}; } catch (e) { /* not JSON */ }
      if (err.code === "unauthorized") { closeLogs(); showLogin(err.message); return; }
      logState(v, `(${err.code || "HTTP " + resp.status}: ${err.message || "the log could not be read"})`, true);
      return;
    }
    logState(v, "(following live)");
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (logView !== v) return;
          logItem(v, line);
        }
      }
      logState(v, "(the host ended the stream: is it stopping? Open the log again once it is back)", true);
    } catch (e) {
      if (!v.ctrl.signal.aborted) logState(v, "(the stream broke: " + e.message + ")", true);
    }
  }

  // logItem shows one line of the stream: a log line, a count of lines
  // skipped, the error the stream ends with; a blank line is a keep-alive.
  function logItem(v, line) {
    if (!line.trim()) return;
    let o;
    try { o = JSON.parse(line); } catch (e) { return; }
    if (!o || typeof o !== "object") return;
    if (o.error) {
      logState(v, `(${o.error.code}: ${o.error.message})`, true);
      return;
    }
    if (o.skipped) {
      appendLogRow(el("div", { className: "log-line log-skipped" }, `… ${o.skipped} lines skipped: the log turned over faster than it was read`));
      return;
    }
    appendLogRow(logRow(o));
  }

  function logRow(l) {
    const time = el("span", { className: "log-time", title: String(l.time || "") }, fmtTime(l.time, true));
    if (l.marker) {
      return el("div", { className: "log-line log-marker marker-" + String(l.marker), "data-seq": l.seq, "data-marker": String(l.marker) },
        time, " ", el("span", { className: "log-text" }, `— ${l.text} —`));
    }
    const level = String(l.level || "");
    return el("div", { className: "log-line" + (level ? " lvl-" + level.replace(/[^a-z]/g, "") : ""), "data-seq": l.seq },
      time, " ", el("span", { className: "log-level" }, level.toUpperCase()), " ", el("span", { className: "log-text" }, String(l.text ?? "")));
  }

  // appendLogRow adds a row at the bottom, and scrolls to it unless the
  // reader scrolled up.
  function appendLogRow(row) {
    const box = $("log-lines");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 8;
    box.append(row);
    while (box.childElementCount > MAX_LOG_ROWS) box.firstElementChild.remove();
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  // ---- actions ---------------------------------------------------------

  let noticeTimer = 0;

  function notice(text, ok) {
    const n = $("notice");
    clearTimeout(noticeTimer);
    n.className = "notice " + (ok ? "notice-ok" : "notice-bad");
    setText($("notice-text"), text);
    n.hidden = false;
    if (ok) noticeTimer = setTimeout(() => { n.hidden = true; }, 6000);
  }

  async function act(v, what) {
    const name = v.name;
    if (what === "stop" && !window.confirm(`Stop worker "${name}"? A worker started by a control message is forgotten.`)) return;
    v.busy = true;
    v.restart.disabled = v.stop.disabled = true;
    const path = "/v1/workers/" + encodeURIComponent(name);
    try {
      if (what === "restart") await api("POST", path + "/restart");
      else await api("DELETE", path);
      notice(`${what === "restart" ? "Restarted" : "Stopped"} ${name}.`, true);
    } catch (e) {
      if (e.code === "unauthorized") showLogin(e.message);
      else notice(`Could not ${what} ${name}: ${e.describe ? e.describe() : e.message}`, false);
    } finally {
      v.busy = false;
      v.restart.disabled = v.stop.disabled = false;
      refresh();
    }
  }

  async function startWorker(ev) {
    ev.preventDefault();
    const errBox = $("start-error");
    const fail = (msg) => { errBox.hidden = false; setText(errBox, msg); };
    errBox.hidden = true;
    const name = $("start-name").value.trim();
    const cls = $("start-class").value.trim();
    const text = $("start-config").value.trim();
    let config = {};
    if (text) {
      try {
        config = JSON.parse(text);
      } catch (e) {
        return fail("The config is not valid JSON: " + e.message);
      }
    }
    if (config === null || typeof config !== "object" || Array.isArray(config)) {
      return fail("The config must be a JSON object, such as {\"interval\": \"5s\"}.");
    }
    const body = { name, class: cls, config, supervisor: $("start-supervisor").value.trim() };
    if (!$("start-cluster-fields").hidden && $("start-cluster").checked) {
      const constraints = {};
      for (const part of $("start-constraints").value.split(",")) {
        const p = part.trim();
        if (!p) continue;
        const i = p.indexOf("=");
        const k = i > 0 ? p.slice(0, i).trim() : "";
        if (!k) return fail(`The constraint "${p}" is not KEY=VALUE, such as zone=a.`);
        if (k in constraints) return fail(`The constraint "${k}" is given twice.`);
        constraints[k] = p.slice(i + 1).trim();
      }
      body.cluster = true;
      if (Object.keys(constraints).length) body.constraints = constraints;
    }
    const button = $("start-submit");
    button.disabled = true;
    try {
      const res = await api("POST", "/v1/workers", body);
      // The form may hold a password: clear it once the host has it.
      $("start-form").reset();
      const where = res.host ? " on " + res.host : "";
      const pending = res.pending ? ` (pending: ${res.pending})` : "";
      notice(`${res.worker || name}: ${res.action || "started"}${where}${res.pid ? ", pid " + res.pid : ""}${pending}.`, true);
      $("start-constraints").disabled = true;
    } catch (e) {
      if (e.code === "unauthorized") showLogin(e.message);
      else fail(`${e.code}: ${e.describe ? e.describe() : e.message}`);
    } finally {
      button.disabled = false;
      refresh();
    }
  }

  // ---- start -----------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    setToken(token);
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = $("token");
      const t = input.value.trim();
      input.value = "";
      if (!t) return;
      setToken(t);
      $("login-error").hidden = true;
      classesLoaded = false;
      schedule(0);
    });
    $("forget-token").addEventListener("click", () => {
      setToken("");
      schedule(0);
    });
    $("notice-close").addEventListener("click", () => { $("notice").hidden = true; });
    $("log-close").addEventListener("click", closeLogs);
    $("start-form").addEventListener("submit", startWorker);
    $("start-cluster").addEventListener("change", () => {
      $("start-constraints").disabled = !$("start-cluster").checked;
    });
    poll();
  });
})();
