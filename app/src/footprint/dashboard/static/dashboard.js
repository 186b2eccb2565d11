// The dashboard page: one filter bar drives every chart; the live chart refreshes every few seconds.
// Data, all for the same filter: GET /api/stats (the charts, ClickHouse), GET /api/live (ClickHouse),
// then GET /api/stores (both stores, for the panel; PostgreSQL can take seconds, so the charts come first).
// The Health panel asks GET /api/health on its own, every few seconds (the server asks Prometheus).
"use strict";
(function () {
  const charts = {};
  const form = document.getElementById("filters");
  const status = document.getElementById("status");
  let liveTimer = null;
  let generation = 0;

  const KINDS = {
    views_per_day: { type: "bar", label: "views" },
    unique_visitors_per_day: { type: "line", label: "visitors" },
    top_links: { type: "bar", label: "views", horizontal: true },
    methods: { type: "bar", label: "events" },
    top_events: { type: "bar", label: "events", horizontal: true },
    live_per_minute: { type: "bar", label: "events per minute" },
  };

  function query() {
    const params = new URLSearchParams(new FormData(form));
    if (!params.get("link")) params.delete("link");
    return params.toString();
  }

  function label(value) {
    return value === "" ? "(none)" : String(value);
  }

  function draw(name, labels, values) {
    const chart = charts[name];
    if (chart) {
      chart.data.labels = labels;
      chart.data.datasets[0].data = values;
      chart.update("none");
      return;
    }
    const kind = KINDS[name];
    charts[name] = new Chart(document.getElementById(name), {
      type: kind.type,
      data: { labels: labels, datasets: [{ label: kind.label, data: values, backgroundColor: "#2b5bd7", borderColor: "#2b5bd7" }] },
      options: {
        indexAxis: kind.horizontal ? "y" : "x",
        maintainAspectRatio: false,
        animation: false,
        plugins: { legend: { display: false } },
        scales: { x: { ticks: { autoSkip: true, maxRotation: 0 } }, y: { beginAtZero: !kind.horizontal } },
      },
    });
  }

  async function getJson(path) {
    const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401) {
      window.location.assign("/login");
      throw new Error("logged out");
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || response.statusText);
    return body;
  }

  function fillStores(rows) {
    const body = document.querySelector("#stores tbody");
    body.replaceChildren(...rows.map(function (r) {
      const tr = document.createElement("tr");
      tr.dataset.query = r.query;
      const answer = r.same ? "same" : "DIFFERENT";
      for (const [text, cls] of [[r.query, ""], [r.postgres_ms.toFixed(1), "num"], [r.clickhouse_ms.toFixed(1), "num"],
                                 [answer, r.same ? "same" : "different"]]) {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.appendChild(td);
      }
      return tr;
    }));
  }

  async function refresh() {
    const mine = ++generation;
    status.textContent = "loading...";
    status.classList.remove("error");
    try {
      const data = await getJson("/api/stats?" + query());
      if (mine !== generation) return;  // a newer filter is being drawn
      for (const name of ["views_per_day", "unique_visitors_per_day", "top_links", "methods", "top_events"]) {
        const rows = data.charts[name];
        draw(name, rows.map(function (r) { return label(r[0]); }), rows.map(function (r) { return r[1]; }));
      }
      await refreshLive();
      const since = "since " + data.filter.since + " (UTC)";
      status.textContent = since + ", comparing the stores...";
      document.body.dataset.updated = String(mine);
      const compared = await getJson("/api/stores?" + query());
      if (mine !== generation) return;
      fillStores(compared.stores);
      const differ = compared.stores.filter(function (r) { return !r.same; }).length;
      status.textContent = since + (differ ? ", " + differ + " answers differ between the stores" : "");
      document.body.dataset.compared = String(mine);
    } catch (err) {
      status.textContent = "could not load: " + err.message;
      status.classList.add("error");
    }
  }

  async function refreshLive() {
    const data = await getJson("/api/live?" + query());
    const counts = new Map(data.rows.map(function (r) { return [r[0], r[1]]; }));
    const end = new Date(data.now + ":00Z");
    const labels = [];
    const values = [];
    for (let i = data.minutes - 1; i >= 0; i--) {
      const minute = new Date(end.getTime() - i * 60000).toISOString().slice(0, 16);
      labels.push(minute.slice(11));
      values.push(counts.get(minute) || 0);
    }
    draw("live_per_minute", labels, values);
    document.body.dataset.live = String(values.reduce(function (a, b) { return a + b; }, 0));
    if (liveTimer === null) {
      liveTimer = window.setInterval(function () { refreshLive().catch(function () {}); }, data.refresh_seconds * 1000);
    }
  }

  const STATES = { ok: "ok", warning: "warning", problem: "problem", nodata: "no data", unreachable: "unreachable",
                   off: "off" };
  let healthRounds = 0;

  function span(cls, text) {
    const el = document.createElement("span");
    el.className = cls;
    el.textContent = text;
    return el;
  }

  function fillHealth(data) {
    const badge = document.getElementById("health-state");
    badge.className = "badge " + data.state;
    badge.textContent = STATES[data.state] || data.state;
    const message = document.getElementById("health-message");
    message.textContent = data.message;
    message.className = "health-message " + data.state;
    message.hidden = !data.message;
    document.getElementById("health").replaceChildren(...data.lines.map(function (line) {
      const li = document.createElement("li");
      li.dataset.check = line.check;
      li.dataset.subject = line.subject;
      li.dataset.state = line.state;
      li.append(span("badge " + line.state, STATES[line.state]), span("check", line.check),
                span("subject", line.subject), span("text", line.text));
      return li;
    }));
    document.getElementById("health-meta").textContent = data.url
      ? "Prometheus " + data.url + ", asked in " + data.query_ms.toFixed(0) + " ms at " + data.checked_at : "";
    document.getElementById("health-panel").dataset.state = data.state;
  }

  async function refreshHealth() {
    let wait = 30;
    try {
      const data = await getJson("/api/health");
      fillHealth(data);
      wait = data.refresh_seconds;
    } catch (err) {
      fillHealth({ state: "unreachable", message: "could not load the health panel: " + err.message, lines: [], url: "" });
    }
    document.body.dataset.health = String(++healthRounds);
    window.setTimeout(refreshHealth, wait * 1000);
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    refresh();
  });
  for (const el of form.querySelectorAll("select")) el.addEventListener("change", refresh);
  refresh();
  refreshHealth();
})();
