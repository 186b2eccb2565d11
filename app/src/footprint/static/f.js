/* Footprint browser snippet. Page views (single-page-app navigation included) and custom events.
   No cookies, no storage, no identifiers: the collector derives a daily visitor id itself.
   Sends nothing when the browser asks not to be tracked (Do-Not-Track, Global Privacy Control).
   <script defer src="https://COLLECTOR/f.js" data-key="PUBLIC_KEY"></script>
   footprint.track("Signup", {plan: "pro"}) */
(function (w, d, n) {
  var s = d.currentScript;
  var key = s && s.getAttribute("data-key");
  var api = (s && s.getAttribute("data-api")) || (s ? new URL(s.src).origin : "");
  var off = n.doNotTrack === "1" || w.doNotTrack === "1" || n.globalPrivacyControl === true;
  var last;

  function id() {
    return w.crypto && crypto.randomUUID ? crypto.randomUUID() : Date.now() + "-" + Math.random().toString(36).slice(2);
  }

  function send(ev) {
    if (off || !key) return;
    ev.timestamp = new Date().toISOString();
    ev.messageId = id();
    var body = JSON.stringify({ key: key, batch: [ev] });
    var url = api + "/v1/b";
    try {
      if (n.sendBeacon && n.sendBeacon(url, new Blob([body], { type: "text/plain" }))) return;
    } catch (e) { /* fall back to fetch */ }
    if (w.fetch) {
      fetch(url, { method: "POST", body: body, keepalive: true, credentials: "omit",
        headers: { "Content-Type": "text/plain" } })["catch"](function () {});
    }
  }

  function page() {
    var path = location.pathname;
    if (path === last) return;
    last = path;
    var ctx = {};
    if (d.referrer) {
      try {
        var ref = new URL(d.referrer);
        if (ref.host !== location.host) ctx.referrer = ref.host; /* the host only, never the full URL */
      } catch (e) { /* not a URL */ }
    }
    /* the query string, for the UTM parameters only: the collector stores nothing else of it */
    if (location.search) ctx.search = location.search.slice(0, 2000);
    send({ type: "page", properties: { path: path }, context: { page: ctx } });
  }

  ["pushState", "replaceState"].forEach(function (name) {
    var orig = history[name];
    history[name] = function () {
      var out = orig.apply(this, arguments);
      page();
      return out;
    };
  });
  w.addEventListener("popstate", page);
  w.footprint = {
    track: function (name, properties) { send({ type: "track", event: String(name), properties: properties || {} }); },
    page: page
  };
  page();
})(window, document, navigator);
