// The dashboard page: one filter bar drives every chart; the live chart refreshes every few seconds.
// The filter lives in the address (?range=&type=&link=&source=&device=&browser=&os=): opening it restores
// the filter (the first load asks with the address's own query, so a bad one shows the API's 400 message),
// and every change of the filter replaces it (history.replaceState). A click on a bar of the sources or
// audience panels filters by that value ("(none)": nothing known).
// The Visits panel shows figures and the entry and exit pages as lists (from /api/stats too).
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
    referrers: { type: "bar", label: "events", horizontal: true, filter: "source" },
    utm_sources: { type: "bar", label: "events", horizontal: true },
    utm_mediums: { type: "bar", label: "events", horizontal: true },
    utm_campaigns: { type: "bar", label: "events", horizontal: true },
    browsers: { type: "bar", label: "events", horizontal: true, filter: "browser" },
    operating_systems: { type: "bar", label: "events", horizontal: true, filter: "os" },
    devices: { type: "bar", label: "events", horizontal: true, filter: "device" },
    bots_per_day: { type: "bar", label: "bot events" },
    bot_agents: { type: "bar", label: "bot events", horizontal: true },
  };
  const DRAWN = Object.keys(KINDS).filter(function (name) { return name !== "live_per_minute"; });
  const SUGGESTED = { referrers: "source-values", browsers: "browser-values", operating_systems: "os-values" };
  const OPTIONAL = ["link", "source", "device", "browser", "os"];  // left out of the address when empty

  function query() {
    const params = new URLSearchParams(new FormData(form));
    for (const name of OPTIONAL) if (!params.get(name)) params.delete(name);
    return params.toString();
  }

  function restore() {
    for (const [name, value] of new URLSearchParams(window.location.search)) {
      const field = form.elements.namedItem(name);
      if (field) field.value = value;
    }
  }

  function filterBy(name, value) {
    form.elements.namedItem(KINDS[name].filter).value = value;
    refresh();
  }

  function suggest(name, labels) {
    const list = document.getElementById(SUGGESTED[name]);
    if (!list) return;
    list.replaceChildren(...labels.map(function (text) {
      const option = document.createElement("option");
      option.value = text;
      return option;
    }));
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
        onClick: kind.filter ? function (event, elements, chart) {
          if (elements.length) filterBy(name, chart.data.labels[elements[0].index]);
        } : undefined,
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

  function tableRow(cells) {  // [[text, class], ...] -> a <tr>
    const tr = document.createElement("tr");
    for (const [text, cls] of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    return tr;
  }

  function fillStores(rows) {
    const body = document.querySelector("#stores tbody");
    body.replaceChildren(...rows.map(function (r) {
      const answer = r.same ? "same" : "DIFFERENT";
      const tr = tableRow([[r.query, ""], [r.postgres_ms.toFixed(1), "num"], [r.clickhouse_ms.toFixed(1), "num"],
                           [answer, r.same ? "same" : "different"]]);
      tr.dataset.query = r.query;
      return tr;
    }));
  }

  function drawCharts(charts) {
    for (const name of DRAWN) {
      const rows = charts[name];
      const labels = rows.map(function (r) { return label(r[0]); });
      draw(name, labels, rows.map(function (r) { return r[1]; }));
      if (SUGGESTED[name]) suggest(name, labels);
    }
    const bots = charts.bots_per_day.reduce(function (sum, r) { return sum + r[1]; }, 0);
    document.getElementById("bots-total").textContent = bots + " in the range";
  }

  function duration(seconds) {  // 45 -> "45s", 840 -> "14m 00s", 3725 -> "1h 02m 05s"
    const h = Math.floor(seconds / 3600);
    const m = Math.floor(seconds % 3600 / 60);
    const s = seconds % 60;
    const two = function (n) { return String(n).padStart(2, "0"); };
    return h ? h + "h " + two(m) + "m " + two(s) + "s" : m ? m + "m " + two(s) + "s" : s + "s";
  }

  function fillPages(name, rows) {
    document.querySelector("#" + name + " tbody").replaceChildren(...rows.map(function (r) {
      return tableRow([[label(r[0]), ""], [String(r[1]), "num"]]);
    }));
  }

  // the Visits panel: [visits, bounces, bounce rate %, average duration s, pages per visit], entry and exit pages
  function drawVisits(charts, timeout) {
    const figures = charts.visits[0];
    document.getElementById("visits-count").textContent = String(figures[0]);
    document.getElementById("visits-bounce-rate").textContent = figures[2] + " %";
    document.getElementById("visits-duration").textContent = duration(figures[3]);
    document.getElementById("visits-pages").textContent = figures[4].toFixed(2);
    document.getElementById("visits-timeout").textContent = "(a visit ends after " + timeout + " minutes without events)";
    fillPages("entry_pages", charts.entry_pages);
    fillPages("exit_pages", charts.exit_pages);
  }

  // search: the query to ask with (the address's own on the first load), else the filter bar's
  async function refresh(search) {
    const mine = ++generation;
    const asked = search === undefined ? query() : search;
    status.textContent = "loading...";
    status.classList.remove("error");
    try {
      const data = await getJson("/api/stats?" + asked);
      if (mine !== generation) return;  // a newer filter is being drawn
      window.history.replaceState(null, "", "?" + query());
      drawCharts(data.charts);
      drawVisits(data.charts, data.session_timeout_minutes);
      await refreshLive(asked);
      const since = "since " + data.filter.since + " (UTC)";
      status.textContent = since + ", comparing the stores...";
      document.body.dataset.updated = String(mine);
      const compared = await getJson("/api/stores?" + asked);
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

  async function refreshLive(asked) {
    const data = await getJson("/api/live?" + (asked === undefined ? query() : asked));
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
  for (const el of form.querySelectorAll("select")) el.addEventListener("change", function () { refresh(); });
  restore();
  refresh(window.location.search.replace(/^\?/, ""));
  refreshHealth();
})();
