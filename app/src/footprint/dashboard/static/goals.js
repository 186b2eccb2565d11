// The Goals and Funnels panels (issue 35 item 4), drawn from the answer of GET /api/stats that dashboard.js hands
// over in a "footprint:stats" event: its "goals" (the definitions in force, each with its source: the inventory's
// are read-only here) and its charts.goals and charts.funnels rows (ClickHouse's, the same as `footprint stats
// --json`): goals [name, visitors, conversions, visitors in the filter, rate %], funnels [funnel, step, goal,
// visitors, from the first step %, drop-off from the step before %]. Comparing (compare=previous), its
// previous.charts.goals and .funnels rows (the server's compare.compared: each figure, its previous value and its
// change, in per cent or, for a rate, in points) fill the panels' "previous" and "change" columns. The goal names
// are offered to the filter bar's goal field (goal=NAME: only the visitors who reached it). The signed-in owner adds goals and funnels
// (POST /api/goals, /api/funnels) and deletes the dashboard's own (DELETE /api/goals/NAME, /api/funnels/NAME);
// after a change the filter is applied again, which redraws every panel. A share link's page has no forms.
"use strict";
(function () {
  const SHARED = /^\/share\/[^/]+$/.test(window.location.pathname);

  function element(tag, text, cls) {
    const el = document.createElement(tag);
    if (text !== undefined) el.textContent = text;
    if (cls) el.className = cls;
    return el;
  }

  function row(values) {  // [[text, class], ...] or a node as the last cell's content
    const tr = document.createElement("tr");
    for (const [value, cls] of values) {
      const td = element("td", undefined, cls);
      if (value instanceof Node) td.appendChild(value); else td.textContent = value;
      tr.appendChild(td);
    }
    return tr;
  }

  function rate(value) {
    return value + " %";
  }

  // a count's change in per cent (null: none before), a rate's in points
  function changed(value, figure, isRate) {
    if (isRate) return (value > 0 ? "+" : "") + value + " pts";
    if (value === null) return figure ? "new" : "\u2013";
    return (value > 0 ? "+" : "") + value + " %";
  }

  // compared: a row of compare.compared (the names, then each figure, its previous value, its change) or undefined;
  // figure i of ``columns`` [[i, isRate], ...] as its cells: the value, and comparing, the previous value and change
  function figures(columns, names, plain, compared) {
    const cells = [];
    for (const [i, isRate] of columns) {
      const format = isRate ? rate : String;
      const at = names + 3 * (i - names);
      cells.push([format(plain[i]), "num"]);
      if (compared) cells.push([format(compared[at + 1]), "num cmp"], [changed(compared[at + 2], compared[at], isRate),
                                                                     "num cmp"]);
      else cells.push(["", "num cmp"], ["", "num cmp"]);
    }
    return cells;
  }

  async function change(method, path, body, message) {
    message.classList.remove("error");
    message.textContent = "saving...";
    try {
      const response = await fetch(path, { method: method, credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body) });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.detail || response.statusText);
      message.textContent = "";
      document.getElementById("filters").requestSubmit();  // every panel again, with the change
      return true;
    } catch (err) {
      message.textContent = "not saved: " + err.message;
      message.classList.add("error");
      return false;
    }
  }

  // where a definition comes from: the inventory (read-only), or a button deleting the dashboard's own
  function source(kind, definition, message) {
    if (definition.source !== "dashboard" || SHARED) return definition.source;
    const button = element("button", "Delete", "delete");
    button.type = "button";
    button.dataset.delete = definition.name;
    button.addEventListener("click", function () {
      change("DELETE", "/api/" + kind + "/" + encodeURIComponent(definition.name), undefined, message);
    });
    return button;
  }

  function drawGoals(definitions, rows, compared) {
    const counted = new Map((rows || []).map(function (r) { return [r[0], r]; }));
    const before = new Map((compared || []).map(function (r) { return [r[0], r]; }));
    document.getElementById("goal-values").replaceChildren(...definitions.map(function (goal) {
      const option = document.createElement("option");
      option.value = goal.name;
      return option;
    }));
    const message = document.getElementById("goal-message");
    const body = document.querySelector("#goals tbody");
    body.replaceChildren(...definitions.map(function (goal) {
      const r = counted.get(goal.name) || [goal.name, 0, 0, 0, 0];
      const how = goal.event !== undefined ? "event " + goal.event : "page " + goal.page;
      const then = compared ? before.get(goal.name) || [goal.name, 0, 0, null, 0, 0, null, 0, 0, null, 0, 0, 0]
        : undefined;
      const tr = row([[goal.name, ""], [how, ""], ...figures([[1, false], [2, false], [4, true]], 1, r, then),
                      [source("goals", goal, message), "source"]]);
      tr.dataset.goal = goal.name;
      return tr;
    }));
    if (!definitions.length) body.appendChild(row([["no goals yet", ""]]));
  }

  function drawFunnel(funnel, rows, message, compared) {
    const table = element("table", undefined, "funnel");
    table.dataset.funnel = funnel.name;
    const caption = element("caption", funnel.name + " (within a " + (funnel.within === "day" ? "UTC day" : "visit")
                                       + ") ");
    const from = source("funnels", funnel, message);
    caption.append(from instanceof Node ? from : element("span", from, "meta"));
    table.appendChild(caption);
    const head = element("thead");
    head.appendChild(row([["step", ""], ["goal", ""], ["visitors", "num"], ["previous", "num cmp"],
                          ["change", "num cmp"], ["of the first", "num"], ["previous", "num cmp"], ["change", "num cmp"],
                          ["drop-off", "num"], ["previous", "num cmp"], ["change", "num cmp"], ["", "bar"]]));
    table.appendChild(head);
    const body = element("tbody");
    if (funnel.unknown_steps.length) {
      body.appendChild(row([["not counted: no goal named " + funnel.unknown_steps.join(", "), ""]]));
    }
    rows.forEach(function (r, i) {
      const bar = element("div");
      bar.style.width = Math.min(100, r[4]) + "%";
      body.appendChild(row([[String(r[1]), "num"], [r[2], ""],
                            ...figures([[3, false], [4, true], [5, true]], 3, r, compared && compared[i]),
                            [bar, "bar"]]));
    });
    table.appendChild(body);
    return table;
  }

  function byFunnel(rows) {  // funnel name -> its rows, in step order
    const steps = new Map();
    for (const r of rows || []) {
      if (!steps.has(r[0])) steps.set(r[0], []);
      steps.get(r[0]).push(r);
    }
    return steps;
  }

  function drawFunnels(definitions, rows, compared) {
    const message = document.getElementById("funnel-message");
    const steps = byFunnel(rows);
    const before = compared ? byFunnel(compared) : undefined;
    const box = document.getElementById("funnels");
    box.replaceChildren(...definitions.map(function (funnel) {
      return drawFunnel(funnel, steps.get(funnel.name) || [], message, before && (before.get(funnel.name) || []));
    }));
    if (!definitions.length) box.appendChild(element("p", "no funnels yet", "meta"));
  }

  document.addEventListener("footprint:stats", function (event) {
    const data = event.detail;
    if (!data.goals) return;  // a share link without these panels
    const previous = data.previous ? data.previous.charts : undefined;
    drawGoals(data.goals.goals, data.charts.goals, previous && (previous.goals || []));
    drawFunnels(data.goals.funnels, data.charts.funnels, previous && previous.funnels);
    const failed = document.getElementById("goals-error");
    failed.textContent = data.goals.error ? "could not read the goals and funnels: " + data.goals.error : "";
    failed.hidden = !data.goals.error;
  });

  function onSubmit(id, send) {
    document.getElementById(id).addEventListener("submit", async function (event) {
      event.preventDefault();
      if (await send()) event.target.reset();
    });
  }

  if (SHARED) {
    for (const form of document.querySelectorAll("form.owner")) form.hidden = true;
    return;
  }
  onSubmit("goal-form", function () {
    const goal = { name: document.getElementById("goal-name").value };
    goal[document.getElementById("goal-kind").value] = document.getElementById("goal-value").value;
    return change("POST", "/api/goals", goal, document.getElementById("goal-message"));
  });
  onSubmit("funnel-form", function () {
    const steps = document.getElementById("funnel-steps").value.split(">").map(function (s) { return s.trim(); });
    return change("POST", "/api/funnels", { name: document.getElementById("funnel-name").value, steps: steps,
      within: document.getElementById("funnel-within").value }, document.getElementById("funnel-message"));
  });
})();
