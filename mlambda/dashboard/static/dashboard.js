// mlambda dashboard: fills the page's shell from /dashboard/api (the admin API, read
// in-process for the signed-in session). Builds DOM with textContent only.
//
// Timings (User Timing, read by bench/dashboard_load.py, visible in DevTools): a mark
// "mlambda:ready" when the page's first view is complete, and measures "mlambda:body
// <path>" (a data request's body read and parsed), "mlambda:draw" (the charts drawn),
// "mlambda:render <what>" (a table or the log list built).
"use strict";
(function () {
  const body = document.body;
  const page = body.dataset.page;
  const CHARTS = {
    invocations: [["Invocations", "#2358c4"]],
    errors: [["Errors", "#b42318"], ["Throttles", "#d68a00"]],
    duration: [["DurationP50", "#2358c4"], ["DurationP99", "#8a3ffc"]],
    concurrency: [["ConcurrentExecutions", "#1a7f37"], ["Instances", "#5f6b7a"]],
    coldstarts: [["ColdStarts", "#d68a00"]],
    batch: [["BatchSizeAvg", "#2358c4"], ["BatchSizeMax", "#8a3ffc"]],
  };

  const SERIES = Object.values(CHARTS).flat().map(([key]) => key).join(",");

  let loading = true;  // measures only until the first view is complete: a tab left
                       // open all day must not pile up timing entries

  function measure(name, start) {
    if (loading) performance.measure("mlambda:" + name, { start, end: performance.now() });
  }

  async function api(path, params, signal) {
    const url = new URL("/dashboard/api/" + path, location.origin);
    for (const [k, v] of Object.entries(params || {})) {
      if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
    }
    const r = await fetch(url, { credentials: "same-origin", signal,
                                 headers: { accept: "application/json" } });
    if (r.status === 401) {
      location.assign("/dashboard/signin");
      throw new Error("signed out");
    }
    const headersAt = performance.now();
    const data = await r.json().catch(() => ({}));
    measure("body " + path, headersAt);
    if (!r.ok) throw new Error(data.errorMessage || r.status + " " + r.statusText);
    return data;
  }

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  function num(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    return Number(v).toLocaleString(undefined, { maximumFractionDigits: digits,
                                                 minimumFractionDigits: 0 });
  }

  function when(ts) {
    return new Date(ts * 1000).toISOString().replace("T", " ").replace("Z", "");
  }

  function fill(tbody, rows) {
    tbody.replaceChildren(...rows.map((cells) => el("tr", {}, ...cells)));
  }

  // fn now, then again `ms` after each run ends (never two at once, none while the tab
  // is hidden); the first run's promise, which never rejects
  function refresh(ms, fn) {
    const run = () => Promise.resolve().then(fn).catch(() => {});
    const first = run();
    first.then(function later() {
      setTimeout(() => (document.hidden ? Promise.resolve() : run()).then(later), ms);
    });
    return first;
  }

  function ready(...first) {
    Promise.all(first).then(() => {
      loading = false;
      performance.mark("mlambda:ready");
    });
  }

  // -- overview ---------------------------------------------------------------------------

  async function overview() {
    const tbody = document.querySelector("#overview tbody");
    const status = document.getElementById("updated");
    let rows;
    try {
      const data = await api("metrics/overview");
      rows = data.functions;
      status.textContent = "Updated " + new Date().toLocaleTimeString() +
        "; requests/s, errors and p99 over the last minute, cost since 00:00 UTC.";
    } catch (err) {
      const fns = await api("functions");
      rows = fns.map((f) => ({ function: f.name,
        instances: f.runtime.reduce((n, r) => n + r.instances.length, 0) }));
      status.textContent = "Metrics unavailable (" + err.message + ")";
    }
    const t = performance.now();
    fill(tbody, rows.map((r) => [
      el("td", {}, el("a", { href: "/dashboard/functions/" + encodeURIComponent(r.function),
                             text: r.function })),
      el("td", { class: "num", text: num(r.requests_per_s, 2) }),
      el("td", { class: "num" + (r.errors_1m ? " bad" : ""), text: num(r.errors_1m, 0) }),
      el("td", { class: "num", text: num(r.duration_p99_ms, 1) }),
      el("td", { class: "num", text: num(r.instances, 0) }),
      el("td", { class: "num", text: num(r.cost_today_usd, 4) }),
    ]));
    measure("render overview", t);
  }

  async function costs() {
    const note = document.getElementById("cost-note");
    let c;
    try {
      c = await api("cost", { since: "30d" });
    } catch (err) {
      note.textContent = "Cost unavailable (" + err.message + ")";
      return;
    }
    const aws = c.aws;
    const rows = [["AWS Lambda + API Gateway", aws.total_usd, aws.monthly_usd]];
    if (aws.server) {
      rows.push(["An always-on server sized for the peak (" + (aws.server.count > 1 ?
        aws.server.count + " × " : "") + aws.server.name + ")", aws.server.total_usd,
        aws.server.monthly_usd]);
    }
    const m = c.this_machine;
    rows.push(["This machine (" + m.cpus + " cores, priced as " + m.priced_as + ")",
               m.total_usd, m.monthly_usd]);
    fill(document.querySelector("#cost tbody"), rows.map(([what, total, monthly]) => [
      el("td", { text: what }), el("td", { class: "num", text: num(total, 2) }),
      el("td", { class: "num", text: num(monthly, 2) })]));
    note.textContent = c.usage.requests.toLocaleString() + " requests, " +
      num(c.usage.gb_seconds, 1) + " GB-s; prices: " + c.sheet.name + " (" + c.sheet.date +
      ")" + (aws.saving_vs_server !== null && aws.saving_vs_server !== undefined ?
      "; Lambda saves " + (100 * aws.saving_vs_server).toFixed(1) + "% against the server." : ".");
  }

  // -- a function -------------------------------------------------------------------------

  function functionPage() {
    const name = body.dataset.function;
    const charts = {};
    let range = (location.hash.match(/range=(\w+)/) || [])[1] || "1h";
    const status = document.getElementById("chart-status");

    function pressRange() {
      for (const b of document.querySelectorAll("[data-range]")) {
        b.setAttribute("aria-pressed", String(b.dataset.range === range));
      }
    }

    async function loadCharts() {
      let data;
      try {
        data = await api("metrics", { function: name, since: range, series: SERIES });
      } catch (err) {
        status.textContent = "Metrics unavailable: " + err.message;
        return;
      }
      const t = performance.now();
      status.textContent = "Last " + range + ", one point per " + data.period +
        " s; updated " + new Date().toLocaleTimeString() + ".";
      const series = data.series || {};
      const xs = (series.Invocations || []).map((p) => p[0]);
      const ids = Object.keys(CHARTS);
      const figs = ids.map((id) => document.getElementById("chart-" + id));
      // every width read before any chart is added: one layout, not one per chart
      const widths = figs.map((fig) => Math.max(240, fig.clientWidth - 16));
      ids.forEach((id, n) => {
        const lines = CHARTS[id];
        const fig = figs[n];
        // every series has one [ts, value] per period, the same periods as Invocations
        const ys = lines.map(([key]) => (series[key] || xs.map(() => [0, null])).map((p) => p[1]));
        const total = ys.flat().reduce((sum, v) => sum + (v || 0), 0);
        fig.dataset.points = String(xs.length);
        fig.dataset.total = String(total);
        const plotData = [xs, ...ys];
        if (charts[id]) {
          charts[id].setData(plotData);
        } else if (window.uPlot) {
          charts[id] = new window.uPlot({
            width: widths[n], height: 180,
            // durations and batch sizes are null while idle: join the points that exist and mark them
            series: [{}, ...lines.map(([key, color]) => ({
              label: key, stroke: color, width: 1.5, spanGaps: id === "duration" || id === "batch",
              points: { show: id === "duration" || id === "batch", size: 4 } }))],
            axes: [{}, { size: 50 }],
            legend: { live: false },
          }, plotData, fig);
        } else {
          status.textContent = "Charts need uPlot (run `make install`).";
        }
      });
      measure("draw", t);
    }

    async function loadInfo() {
      const f = await api("functions/" + encodeURIComponent(name));
      const t = performance.now();
      fill(document.querySelector("#aliases tbody"), f.aliases.map((a) => [
        el("td", { text: a.name }), el("td", { text: a.version }),
        el("td", { text: a.additional_version || "–" }),
        el("td", { class: "num", text: a.additional_version ?
          (100 * (1 - a.weight)).toFixed(0) + "% / " + (100 * a.weight).toFixed(0) + "%" : "100%" }),
      ]));
      const running = new Map(f.runtime.map((r) => [r.version, r.instances.length]));
      fill(document.querySelector("#versions tbody"), f.versions.map((v) => [
        el("td", { text: v.version }),
        el("td", { class: "mono", text: v.sha256.slice(0, 12) }),
        el("td", { class: "num", text: String(running.get(v.version) || 0) }),
      ]));
      measure("render versions", t);
    }

    // logs: a search, and a live tail that long-polls with the search's cursor
    const logs = document.getElementById("logs");
    const logStatus = document.getElementById("log-status");
    const tailButton = document.getElementById("log-tail");
    let cursor = null;
    let tail = null;

    function entryNode(e) {
      const cls = e.level === "error" ? "error" : (e.kind === "invocation" ? "" : "event");
      const pre = el("pre", { class: cls, "data-request-id": e.request_id || "" });
      pre.append(el("span", { class: "when", text: when(e.ts) + (e.kind === "invocation" ?
        "" : " [" + e.kind + "]") + "\n" }), e.message.replace(/\n$/, ""));
      return pre;
    }

    function query() {
      return { function: name, filter: document.getElementById("log-filter").value.trim(),
               request_id: document.getElementById("log-request").value.trim() };
    }

    async function search() {
      try {
        const res = await api("logs", { ...query(), since: range, limit: 200 });
        const t = performance.now();
        logs.replaceChildren(...res.entries.map(entryNode));
        cursor = res.cursor;
        logStatus.textContent = res.entries.length + " entries (last " + range + ")";
        logs.scrollTop = logs.scrollHeight;
        measure("render logs", t);
      } catch (err) {
        logStatus.textContent = "Log search failed: " + err.message;
      }
    }

    async function follow(ctrl) {
      while (!ctrl.signal.aborted) {
        try {
          const res = await api("logs", { ...query(), after: cursor, wait: 20, limit: 500 },
                                ctrl.signal);
          cursor = res.cursor;
          for (const e of res.entries) logs.append(entryNode(e));
          while (logs.childElementCount > 1000) logs.firstElementChild.remove();
          if (res.entries.length) logs.scrollTop = logs.scrollHeight;
        } catch (err) {
          if (ctrl.signal.aborted) return;
          logStatus.textContent = "Live tail paused: " + err.message;
          await new Promise((r) => setTimeout(r, 3000));
        }
      }
    }

    document.getElementById("log-search").addEventListener("submit", (ev) => {
      ev.preventDefault();
      search();
    });
    tailButton.addEventListener("click", async () => {
      if (tail) {
        tail.abort();
        tail = null;
        tailButton.setAttribute("aria-pressed", "false");
        logStatus.textContent = "Live tail stopped.";
        return;
      }
      if (cursor === null) await search();
      tail = new AbortController();
      tailButton.setAttribute("aria-pressed", "true");
      logStatus.textContent = "Live tail: new entries appear below as they are written.";
      follow(tail);
    });
    for (const b of document.querySelectorAll("[data-range]")) {
      b.addEventListener("click", () => {
        range = b.dataset.range;
        history.replaceState(null, "", "#range=" + range);
        pressRange();
        loadCharts();
      });
    }
    window.addEventListener("resize", () => {
      for (const [id, chart] of Object.entries(charts)) {
        const fig = document.getElementById("chart-" + id);
        chart.setSize({ width: Math.max(240, fig.clientWidth - 16), height: 180 });
      }
    });
    pressRange();
    ready(refresh(10000, loadCharts), refresh(10000, loadInfo), search());
  }

  // -- the model volume -------------------------------------------------------------------

  async function modelsPage() {
    const root = document.getElementById("models");
    const models = await api("models");
    if (!models.length) {
      root.replaceChildren(el("p", { class: "muted", text: "No models in the volume." }));
      return;
    }
    root.replaceChildren(...models.map((m) => {
      const failed = m.versions.filter((v) => v.error).length;
      const tbody = el("tbody");
      fill(tbody, m.versions.slice().reverse().map((v) => [
        el("td", { class: "mono", text: v.sha256.slice(0, 12) }),
        el("td", { text: v.filename }),
        el("td", { class: "num", text: num(v.size / 1048576, 2) + " MB" }),
        el("td", { text: when(v.created_at) }),
        el("td", { text: v.current ? "current" : "" }),
        el("td", { class: v.error ? "bad" : "", text: v.error || "" }),
      ]));
      const loaded = m.instances.length ? m.instances.map((i) =>
        i.function + ":" + i.version + " → " + i.sha256.slice(0, 12) +
        (i.error ? " (failed)" : "")).join(", ") : "no running instance has loaded it";
      return el("section", { class: "model" },
        el("h2", { text: m.name }),
        el("p", { class: "muted", text: "Current: " + (m.current ? m.current.slice(0, 12) : "none") +
          " · " + m.versions.length + (m.versions.length === 1 ? " version · " : " versions · ") +
          failed + (failed === 1 ? " failed load · " : " failed loads · ") + loaded }),
        el("div", { class: "scroll" }, el("table", {},
          el("thead", {}, el("tr", {}, ...["Version", "File", "Size", "Added", "", "Load error"]
            .map((h) => el("th", { text: h })))), tbody)));
    }));
  }

  if (page === "overview") ready(refresh(5000, overview), refresh(60000, costs));
  else if (page === "function") functionPage();
  else if (page === "models") {
    ready(modelsPage().catch((err) => {
      document.getElementById("models").textContent = "Could not read the models: " + err.message;
    }));
  }
})();
