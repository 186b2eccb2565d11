// The dashboard page: one filter bar drives every chart; the live chart refreshes every few seconds.
// The filter lives in the address (?range=&type=&link=&source=&device=&browser=&os=&country=&goal=): opening it
// restores the filter (the first load asks with the address's own query, so a bad one, an unknown goal too, shows
// the API's 400 message), and every change of the filter replaces it (history.replaceState). A click on a bar of the sources,
// audience or countries panels filters by that value ("(none)": nothing known). Countries are ISO codes.
// goal=NAME: only the visitors who reached that goal in the range (all their events of the filter), every panel.
// The Visits panel shows figures and the entry and exit pages as lists (from /api/stats too); goals.js draws the
// Goals and Funnels panels from the same answer.
// Data, all for the same filter: GET /api/stats (the charts, ClickHouse; "approximate" names the charts drawn from an
// estimate, each with its error bound, shown beside the chart's title), GET /api/live (ClickHouse),
// then GET /api/stores (both stores, for the panel; PostgreSQL can take seconds, so the charts come first).
// The Health panel asks GET /api/health on its own, every few seconds (the server asks Prometheus).
// Compare (compare=previous in the filter): each answer carries the previous period's comparison rows,
// [key, value, previous value, change %] (the server's, the same as `footprint stats --compare --json`):
// series get a faint second line or bars, top lists the change beside each label, the Visits panel and its
// tables a previous value and the change. Each panel's CSV link asks /api/export/NAME.csv with the filter.
// A share link's page (/share/TOKEN) asks /share/TOKEN/api/...: the link's filter and panels, read-only; the
// owner can revoke a link (the Share form's Revoke: POST /api/share/revoke).
"use strict";
(function () {
  const charts = {};
  const changes = {};  // a top list's change % per row, comparing (shown beside its labels)
  const SHARED = /^\/share\/[^/]+$/.test(window.location.pathname);
  const API = SHARED ? window.location.pathname + "/api" : "/api";
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
    countries: { type: "bar", label: "events", horizontal: true, filter: "country" },
    bots_per_day: { type: "bar", label: "bot events" },
    bot_agents: { type: "bar", label: "bot events", horizontal: true },
  };
  const DRAWN = Object.keys(KINDS).filter(function (name) { return name !== "live_per_minute"; });
  const SUGGESTED = { referrers: "source-values", browsers: "browser-values", operating_systems: "os-values",
                      countries: "country-values" };
  const OPTIONAL = ["link", "source", "device", "browser", "os", "country", "goal", "compare"];  // left out of the address when empty
  const CURRENT = "#2b5bd7";
  const PREVIOUS = "rgba(43, 91, 215, 0.3)";

  function query() {
    if (SHARED) return "";  // the link's own filter, whatever is asked
    const params = new URLSearchParams(new FormData(form));
    for (const name of OPTIONAL) if (!params.get(name)) params.delete(name);
    return params.toString();
  }

  function restore(search) {
    for (const [name, value] of new URLSearchParams(search)) {
      const field = form.elements.namedItem(name);
      if (field && field.type === "checkbox") field.checked = field.value === value;
      else if (field) field.value = value;
    }
  }

  function percent(change, value) {  // the change column: +12.5 %, -3 %, new (none before), – (none either time)
    if (change === null || change === undefined) return value ? "new" : "–";
    return (change > 0 ? "+" : "") + change + " %";
  }

  function filterBy(name, value) {
    if (SHARED) return;  // a share link's filter is its own
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

  // change: each row's change in per cent, kept with the previous period's values (the tests read it there)
  function datasets(kind, values, previous, change) {
    const sets = [{ label: kind.label, data: values, backgroundColor: CURRENT, borderColor: CURRENT }];
    if (previous) {
      sets.push({ label: "previous period", data: previous, change: change, backgroundColor: PREVIOUS,
                  borderColor: PREVIOUS, borderDash: [4, 3], pointRadius: 0 });
    }
    return sets;
  }

  // previous, change: the previous period's values and the changes (comparing), else undefined
  function draw(name, labels, values, previous, change) {
    const kind = KINDS[name];
    changes[name] = change;
    const chart = charts[name];
    if (chart) {
      chart.data.labels = labels;
      chart.data.datasets = datasets(kind, values, previous, change);
      chart.options.plugins.legend.display = Boolean(previous);
      chart.update("none");
      return;
    }
    charts[name] = new Chart(document.getElementById(name), {
      type: kind.type,
      data: { labels: labels, datasets: datasets(kind, values, previous, change) },
      options: {
        indexAxis: kind.horizontal ? "y" : "x",
        maintainAspectRatio: false,
        animation: false,
        plugins: {
          legend: { display: Boolean(previous) },
          tooltip: { callbacks: { footer: function (items) {
            const c = changes[name];
            return c && items.length ? "change " + percent(c[items[0].dataIndex], items[0].raw) : "";
          } } },
        },
        scales: {
          x: { ticks: { autoSkip: true, maxRotation: 0 } },
          y: { beginAtZero: !kind.horizontal, ticks: kind.horizontal ? { callback: function (value) {
            const text = this.getLabelForValue(value);
            const c = changes[name];
            return c ? text + " (" + percent(c[value], 1) + ")" : text;
          } } : {} },
        },
        onClick: kind.filter ? function (event, elements, chart) {
          if (elements.length) filterBy(name, chart.data.labels[elements[0].index]);
        } : undefined,
      },
    });
  }

  async function getJson(path) {
    const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.status === 401 && !SHARED) {
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

  // previous: the comparison rows per chart (comparing), else undefined
  function drawCharts(charts, previous) {
    for (const name of DRAWN) {
      if (!(name in charts)) continue;  // a share link without this panel
      const rows = previous ? previous[name] : charts[name];
      const labels = rows.map(function (r) { return label(r[0]); });
      const column = function (i) { return rows.map(function (r) { return r[i]; }); };
      draw(name, labels, column(1), previous && column(2), previous && column(3));
      if (SUGGESTED[name]) suggest(name, labels);
    }
    if (charts.bots_per_day) {
      const bots = charts.bots_per_day.reduce(function (sum, r) { return sum + r[1]; }, 0);
      document.getElementById("bots-total").textContent = bots + " in the range";
    }
  }

  // a chart drawn from an estimate (the server's "approximate": name -> its error bound) says so beside its title;
  // its CSV export and the stores panel count exactly
  function markEstimates(approximate) {
    for (const mark of document.querySelectorAll("[data-approximate]")) {
      const bound = approximate[mark.dataset.approximate];
      mark.textContent = bound ? "\u2248 estimate, " + bound : "";
      mark.hidden = !bound;
    }
  }

  function duration(seconds) {  // 45 -> "45s", 840 -> "14m 00s", 3725 -> "1h 02m 05s"
    const h = Math.floor(seconds / 3600);
    const m = Math.floor(seconds % 3600 / 60);
    const s = seconds % 60;
    const two = function (n) { return String(n).padStart(2, "0"); };
    return h ? h + "h " + two(m) + "m " + two(s) + "s" : m ? m + "m " + two(s) + "s" : s + "s";
  }

  function fillPages(name, rows, compared) {
    document.querySelector("#" + name + " tbody").replaceChildren(...(compared || rows).map(function (r) {
      const cells = [[label(r[0]), ""], [String(r[1]), "num"]];
      if (compared) cells.push([String(r[2]), "num"], [percent(r[3], r[1]), "num"]);
      return tableRow(cells);
    }));
  }

  // the Visits panel: [visits, bounces, bounce rate %, average duration s, pages per visit], entry and exit pages;
  // comparing, each figure's previous value and change
  function drawVisits(charts, timeout, previous) {
    if (!charts.visits) return;  // a share link without this panel
    const figures = charts.visits[0];
    const shown = { count: [0, String], "bounce-rate": [2, function (v) { return v + " %"; }],
                    duration: [3, duration], pages: [4, function (v) { return v.toFixed(2); }] };
    for (const [id, [i, format]] of Object.entries(shown)) {
      document.getElementById("visits-" + id).textContent = format(figures[i]);
      const row = previous && previous.visits[i];
      document.getElementById("visits-" + id + "-previous").textContent = row
        ? "previous " + format(row[2]) + " (" + percent(row[3], row[1]) + ")" : "";
    }
    document.getElementById("visits-timeout").textContent = "(a visit ends after " + timeout + " minutes without events)";
    fillPages("entry_pages", charts.entry_pages, previous && previous.entry_pages);
    fillPages("exit_pages", charts.exit_pages, previous && previous.exit_pages);
  }

  function linkExports(asked) {
    for (const link of document.querySelectorAll("a[data-export]")) {
      link.href = API + "/export/" + link.dataset.export + ".csv" + (asked ? "?" + asked : "");
    }
  }

  let sharedPanels = null;  // a share link's panels, once known

  function showShared(share) {
    if (sharedPanels) return;
    sharedPanels = share.panels;
    restore(share.query);
    for (const field of form.elements) field.disabled = true;
    form.querySelector("button[type=submit]").hidden = true;
    for (const id of ["share", "health-panel"]) document.getElementById(id).hidden = true;
    document.querySelector("form.logout").hidden = true;
    for (const el of document.querySelectorAll("[data-panel]")) el.hidden = !share.panels.includes(el.dataset.panel);
    const bots = document.getElementById("bots-panel");
    bots.hidden = !bots.dataset.panels.split(" ").some(function (p) { return share.panels.includes(p); });
    const notice = document.getElementById("shared");
    notice.textContent = "A shared view, read-only, until " + share.expires_at.replace("T", " ").replace("Z", " UTC");
    notice.hidden = false;
  }

  function shows(panel) {
    return !sharedPanels || sharedPanels.includes(panel);
  }

  // search: the query to ask with (the address's own on the first load), else the filter bar's
  async function refresh(search) {
    const mine = ++generation;
    const asked = search === undefined ? query() : search;
    status.textContent = "loading...";
    status.classList.remove("error");
    try {
      const data = await getJson(API + "/stats?" + asked);
      if (mine !== generation) return;  // a newer filter is being drawn
      if (data.share) showShared(data.share);
      else window.history.replaceState(null, "", "?" + query());
      const previous = data.previous ? data.previous.charts : undefined;
      document.body.classList.toggle("comparing", Boolean(previous));
      drawCharts(data.charts, previous);
      markEstimates(data.approximate || {});
      drawVisits(data.charts, data.session_timeout_minutes, previous);
      document.dispatchEvent(new CustomEvent("footprint:stats", { detail: data }));  // goals.js draws its panels
      linkExports(asked);
      if (shows("live_per_minute")) await refreshLive(asked);
      const since = "since " + data.filter.since + " (UTC)" + (data.filter.goal === null ? ""
        : ", only the visitors who reached the goal \u201c" + data.filter.goal + "\u201d then") + (data.previous
        ? ", compared with " + data.previous.since + " to " + data.previous.until + " (exclusive)" : "");
      status.textContent = since + (shows("stores") ? ", comparing the stores..." : "");
      document.body.dataset.updated = String(mine);
      if (!shows("stores")) return;
      const compared = await getJson(API + "/stores?" + asked);
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
    const data = await getJson(API + "/live?" + (asked === undefined ? query() : asked));
    const compared = data.previous ? data.previous.charts.live_per_minute : null;
    const counts = new Map((compared || data.rows).map(function (r) { return [r[0], r[1]]; }));
    const before = compared && new Map(compared.map(function (r) { return [r[0], r[2]]; }));
    const end = new Date(data.now + ":00Z");
    const labels = [];
    const values = [];
    const previous = [];
    for (let i = data.minutes - 1; i >= 0; i--) {
      const minute = new Date(end.getTime() - i * 60000).toISOString().slice(0, 16);
      labels.push(minute.slice(11));
      values.push(counts.get(minute) || 0);
      if (before) previous.push(before.get(minute) || 0);
    }
    draw("live_per_minute", labels, values, before ? previous : undefined);
    document.body.dataset.live = String(values.reduce(function (a, b) { return a + b; }, 0));
    if (liveTimer === null) {
      liveTimer = window.setInterval(function () { refreshLive().catch(function () {}); }, data.refresh_seconds * 1000);
    }
  }

  // the share form: the panels of the page to choose from, a link for the filter in the address
  function shareForm() {
    const choices = document.getElementById("share-panels");
    for (const el of document.querySelectorAll("[data-panel]")) {
      const box = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.value = el.dataset.panel;
      input.checked = true;
      box.append(input, " " + el.querySelector("h2").firstChild.textContent.trim());
      choices.appendChild(box);
    }
    document.getElementById("share-form").addEventListener("submit", async function (event) {
      event.preventDefault();
      const meta = document.getElementById("share-meta");
      const panels = [...choices.querySelectorAll("input:checked")].map(function (i) { return i.value; });
      try {
        const response = await fetch("/api/share", { method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ query: query(), panels: panels,
                                 expires_seconds: Number(document.getElementById("share-expires").value) }) });
        const body = await response.json();
        if (!response.ok) throw new Error(body.detail || response.statusText);
        const url = document.getElementById("share-url");
        url.value = window.location.origin + body.url;
        url.hidden = false;
        url.select();
        meta.textContent = "Anyone with this link sees these panels of this filter, read-only, until "
          + body.expires_at.replace("T", " ").replace("Z", " UTC") + ".";
        document.getElementById("share-revoke-url").value = url.value;
      } catch (err) {
        meta.textContent = "could not make a link: " + err.message;
      }
    });
  }

  // revoking a link (this page's last, or one pasted): POST /api/share/revoke; it opens nothing from then on
  function revokeForm() {
    document.getElementById("share-revoke").addEventListener("click", async function () {
      const meta = document.getElementById("share-revoke-meta");
      try {
        const response = await fetch("/api/share/revoke", { method: "POST", credentials: "same-origin",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ url: document.getElementById("share-revoke-url").value }) });
        const body = await response.json();
        if (!response.ok) throw new Error(body.detail || response.statusText);
        meta.textContent = "Revoked at " + body.revoked_at.replace("T", " ").replace("Z", " UTC")
          + ": the link opens nothing any more.";
      } catch (err) {
        meta.textContent = "could not revoke it: " + err.message;
      }
    });
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
  for (const el of form.querySelectorAll("select, input[type=checkbox]")) {
    el.addEventListener("change", function () { refresh(); });
  }
  if (SHARED) {
    refresh("");
  } else {
    restore(window.location.search);
    shareForm();
    revokeForm();
    refresh(window.location.search.replace(/^\?/, ""));
    refreshHealth();
  }
})();
