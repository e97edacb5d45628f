"use strict";
// The worklist: drawn from the JSON block a page at a time. Data text is only ever set with
// textContent or attributes, never parsed as markup.
(function () {
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var rows = data.rows;
  var state = { view: "worklist", overlay: "image", sortKey: "rank", sortDir: 1, page: 0, perPage: 50,
                flagged: false, cls: "", patient: "", newOnly: false };
  // A perceptual dark-to-bright ramp (inferno-like): low attention dark, high attention bright.
  var RAMP = [[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]];

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function fixed(value, digits) { return value === null || value === undefined ? "" : Number(value).toFixed(digits); }
  // kt: the risk with more decimals, where three would put it on the wrong side of the threshold.
  function riskText(row) { return row.kt || fixed(row.k, 3); }

  function colour(v) {
    var x = Math.max(0, Math.min(1, v / 255)) * (RAMP.length - 1);
    var i = Math.min(RAMP.length - 2, Math.floor(x));
    var t = x - i;
    return RAMP[i].map(function (c, k) { return Math.round(c + (RAMP[i + 1][k] - c) * t); });
  }

  function heatCanvas(map) {
    // map: [h, w, values 0..255 row-major, peak weight]. The browser's smoothing upsamples the
    // h x w grid to the thumbnail, so the map lies over the image positions it weights.
    var h = map[0], w = map[1], canvas = el("canvas", "heat");
    canvas.width = w; canvas.height = h;
    var context = canvas.getContext("2d");
    var image = context.createImageData(w, h);
    for (var p = 0; p < w * h; p++) {
      var rgb = colour(map[2][p]);
      image.data[4 * p] = rgb[0]; image.data[4 * p + 1] = rgb[1]; image.data[4 * p + 2] = rgb[2];
      image.data[4 * p + 3] = 255;
    }
    context.putImageData(image, 0, 0);
    return canvas;
  }

  function thumb(row) {
    var box = el("div", "thumb");
    var size = row.s || [4, 3];
    box.style.aspectRatio = size[0] + " / " + size[1];
    if (!row.t) { box.appendChild(el("span", "none", row.x || "no picture")); return box; }
    var img = el("img");
    img.loading = "lazy"; img.decoding = "async"; img.alt = row.i; img.src = row.t;
    box.appendChild(img);
    if (state.overlay === "outline" && row.o) {
      var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
      svg.setAttribute("viewBox", "0 0 1000 1000");
      svg.setAttribute("preserveAspectRatio", "none");
      svg.setAttribute("class", "outline");
      var path = document.createElementNS("http://www.w3.org/2000/svg", "path");
      path.setAttribute("d", row.o);
      svg.appendChild(path);
      box.appendChild(svg);
    } else if (state.overlay.indexOf("attention-") === 0 && row.h) {
      var map = row.h[Number(state.overlay.slice(10))];
      if (map) { box.appendChild(heatCanvas(map)); }
    }
    return box;
  }

  function peakNote(row) {
    if (state.overlay.indexOf("attention-") !== 0 || !row.h) { return null; }
    var map = row.h[Number(state.overlay.slice(10))];
    if (!map) { return null; }
    var positions = map[0] * map[1];
    return el("div", "peak", "peak " + (100 * map[3]).toFixed(0) + "% of attention on one of " + positions +
      " positions (even: " + (100 / positions).toFixed(0) + "%)");
  }

  function riskCell(row) {
    var td = el("td");
    td.appendChild(el("div", "risk", riskText(row)));
    var bar = el("div", "bar"), fill = el("span");
    fill.style.width = Math.round(100 * Math.max(0, Math.min(1, row.k || 0))) + "%";
    bar.appendChild(fill); td.appendChild(bar);
    return td;
  }

  function classList(row) {
    var list = el("ul", "classes");
    row.c.forEach(function (entry) {
      var item = el("li", null, entry[0] + " ");
      item.title = entry[1];
      item.appendChild(el("span", "num", fixed(entry[2], 3)));
      list.appendChild(item);
    });
    return list;
  }

  function worklistRow(row) {
    var tr = el("tr");
    tr.dataset.rank = row.r;
    var rank = el("td", "num", row.r);
    if (row.n) { rank.appendChild(el("span", "new", "new")); }
    tr.appendChild(rank);
    var image = el("td");
    image.appendChild(thumb(row));
    var note = peakNote(row);
    if (note) { image.appendChild(note); }
    tr.appendChild(image);
    tr.appendChild(riskCell(row));
    var flag = el("td");
    if (row.f) { flag.appendChild(el("span", "flag-" + (row.f === "refer" ? "refer" : "routine"), row.f)); }
    tr.appendChild(flag);
    var classes = el("td"); classes.appendChild(classList(row)); tr.appendChild(classes);
    var patient = el("td", "patient-id");
    patient.appendChild(el("span", "pid", row.p));
    patient.appendChild(el("div", "warn", row.i));
    tr.appendChild(patient);
    tr.appendChild(el("td", null, row.m));
    tr.appendChild(el("td", "num", row.a === null || row.a === undefined ? "" : (100 * row.a).toFixed(1) + "%"));
    var warnings = el("td", "warn");
    row.w.forEach(function (w) { warnings.appendChild(el("div", null, w)); });
    tr.appendChild(warnings);
    return tr;
  }

  var SORTS = {
    rank: function (r) { return r.r; },
    risk: function (r) { return r.k; },
    flag: function (r) { return r.f === "refer" ? 0 : 1; },
    prediction: function (r) { return r.c.length ? r.c[0][0] : ""; },
    patient: function (r) { return r.p; },
    area: function (r) { return r.a === null || r.a === undefined ? -1 : r.a; }
  };

  function filtered() {
    var needle = state.patient.trim().toLowerCase();
    var out = rows.filter(function (r) {
      if (state.flagged && r.f !== "refer") { return false; }
      if (state.newOnly && !r.n) { return false; }
      if (state.cls && (!r.c.length || r.c[0][1] !== state.cls)) { return false; }
      if (needle && r.p.toLowerCase().indexOf(needle) < 0) { return false; }
      return true;
    });
    var key = SORTS[state.sortKey], dir = state.sortDir;
    if (state.sortKey !== "rank" || dir !== 1) {
      out = out.slice().sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x < y) { return -dir; }
        if (x > y) { return dir; }
        return a.r - b.r;  // ties stay in rank order
      });
    }
    return out;
  }

  function pageOf(items) {
    var per = state.perPage || items.length || 1;
    var pages = Math.max(1, Math.ceil(items.length / per));
    state.page = Math.min(state.page, pages - 1);
    document.getElementById("page-info").textContent = "page " + (state.page + 1) + " of " + pages;
    document.getElementById("prev").disabled = state.page === 0;
    document.getElementById("next").disabled = state.page >= pages - 1;
    return items.slice(state.page * per, (state.page + 1) * per);
  }

  // By patient: one entry per patient id with all their lesions, error rows (no result) among
  // them; an image without a patient id is an entry of its own, never merged into a "patient"
  // that would look like one person.
  function groups(items, errorRows) {
    var byPatient = new Map(), list = [];
    function entry(patient, image) {
      var group = { patient: patient, image: image, rows: [], errors: [] };
      list.push(group);
      return group;
    }
    function groupOf(r) {
      if (!r.p) { return entry("", r.i); }
      if (!byPatient.has(r.p)) { byPatient.set(r.p, entry(r.p, "")); }
      return byPatient.get(r.p);
    }
    items.forEach(function (r) { groupOf(r).rows.push(r); });
    errorRows.forEach(function (r) { groupOf(r).errors.push(r); });
    list.forEach(function (g) { g.rows.sort(function (a, b) { return (b.k - a.k) || (a.r - b.r); }); });
    // Patients by their highest risk; those with no result at all last, by name.
    list.sort(function (a, b) {
      if (!a.rows.length || !b.rows.length) {
        return (b.rows.length ? 1 : 0) - (a.rows.length ? 1 : 0) || (a.patient + a.image < b.patient + b.image ? -1 : 1);
      }
      return (b.rows[0].k - a.rows[0].k) || (a.rows[0].r - b.rows[0].r);
    });
    return list;
  }

  // Error rows for the by-patient view: those matching the patient search. With a filter on the
  // results (flagged, class, new) only those of patients still shown, as they have no result to filter.
  function shownErrors(items) {
    var needle = state.patient.trim().toLowerCase();
    var narrowed = state.flagged || state.newOnly || state.cls;
    var shownPatients = new Set(items.map(function (r) { return r.p; }));
    return (data.errors || []).filter(function (r) {
      if (needle && r.p.toLowerCase().indexOf(needle) < 0) { return false; }
      return !narrowed || (r.p && shownPatients.has(r.p));
    });
  }

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function patientBlock(group) {
    var block = el("section", group.patient ? "patient" : "patient no-patient-id");
    var lesions = group.rows.length + group.errors.length;
    var title = group.patient ? group.patient + " · " + plural(lesions, "lesion")
                              : "no patient id: " + group.image + " (an image on its own)";
    if (group.errors.length) { title += " · " + group.errors.length + " without a result"; }
    if (group.rows.length) {
      var top = group.rows[0];
      title += " · " + (group.patient ? "highest risk " : "risk ") + riskText(top) + " (rank " + top.r + ")";
    }
    block.appendChild(el("h3", null, title));
    var cards = el("div", "cards");
    group.rows.forEach(function (r) {
      var card = el("div", "card");
      card.dataset.rank = r.r;
      card.appendChild(thumb(r));
      card.appendChild(el("div", "risk", "#" + r.r + " · " + riskText(r) + (r.f ? " · " + r.f : "")));
      card.appendChild(el("div", null, r.c.length ? r.c[0][0] : ""));
      cards.appendChild(card);
    });
    group.errors.forEach(function (r) {
      var card = el("div", "card error");
      var box = el("div", "thumb");
      box.style.aspectRatio = "4 / 3";
      box.appendChild(el("span", "none", "no result"));
      card.appendChild(box);
      card.appendChild(el("div", "risk", "error: " + r.e));
      card.appendChild(el("div", "warn", r.i));
      cards.appendChild(card);
    });
    block.appendChild(cards);
    return block;
  }

  function render() {
    var items = filtered();
    var status = document.getElementById("status");
    var worklist = document.getElementById("worklist-view"), patients = document.getElementById("patients-view");
    worklist.hidden = state.view !== "worklist";
    patients.hidden = state.view !== "patients";
    if (state.view === "worklist") {
      var body = document.querySelector("#worklist tbody");
      var fragment = document.createDocumentFragment();
      pageOf(items).forEach(function (r) { fragment.appendChild(worklistRow(r)); });
      body.replaceChildren(fragment);
      status.textContent = items.length + " of " + rows.length + " screened images shown";
    } else {
      var errorRows = shownErrors(items);
      var all = groups(items, errorRows);
      var blocks = document.createDocumentFragment();
      pageOf(all).forEach(function (g) { blocks.appendChild(patientBlock(g)); });
      patients.replaceChildren(blocks);
      var named = all.filter(function (g) { return g.patient; }).length;
      status.textContent = plural(named, "patient") + ", " + plural(all.length - named, "image") +
        " without a patient id; " + items.length + " of " + rows.length + " screened images shown" +
        (errorRows.length ? ", " + errorRows.length + " without a result" : "");
    }
    document.querySelectorAll("th button[data-sort]").forEach(function (b) {
      b.dataset.dir = b.dataset.sort === state.sortKey ? String(state.sortDir) : "";
    });
  }

  function rerender(resetPage) { if (resetPage) { state.page = 0; } render(); }

  var classSelect = document.getElementById("filter-class");
  data.classes.forEach(function (entry) {
    var option = el("option", null, entry[0]);
    option.value = entry[1];
    classSelect.appendChild(option);
  });
  document.querySelectorAll("[data-view]").forEach(function (button) {
    button.addEventListener("click", function () {
      state.view = button.dataset.view;
      document.querySelectorAll("[data-view]").forEach(function (b) {
        b.setAttribute("aria-selected", String(b === button));
      });
      rerender(true);
    });
  });
  document.querySelectorAll("input[name=overlay]").forEach(function (input) {
    input.addEventListener("change", function () { state.overlay = input.value; rerender(false); });
  });
  document.querySelectorAll("th button[data-sort]").forEach(function (button) {
    button.addEventListener("click", function () {
      var key = button.dataset.sort;
      // Risk and flag read best highest first; the others ascending first.
      var first = key === "risk" || key === "area" ? -1 : 1;
      state.sortDir = state.sortKey === key ? -state.sortDir : first;
      state.sortKey = key;
      rerender(true);
    });
  });
  document.getElementById("filter-flagged").addEventListener("change", function (e) { state.flagged = e.target.checked; rerender(true); });
  document.getElementById("filter-new").addEventListener("change", function (e) { state.newOnly = e.target.checked; rerender(true); });
  classSelect.addEventListener("change", function (e) { state.cls = e.target.value; rerender(true); });
  document.getElementById("filter-patient").addEventListener("input", function (e) { state.patient = e.target.value; rerender(true); });
  document.getElementById("per-page").addEventListener("change", function (e) { state.perPage = Number(e.target.value); rerender(true); });
  document.getElementById("prev").addEventListener("click", function () { state.page -= 1; rerender(false); window.scrollTo(0, 0); });
  document.getElementById("next").addEventListener("click", function () { state.page += 1; rerender(false); window.scrollTo(0, 0); });
  document.getElementById("print").addEventListener("click", function () { window.print(); });
  render();
  // For the load-time benchmark and the browser tests: when the first page became usable.
  window.reportReadyMs = performance.now();
  document.documentElement.dataset.ready = "true";
}());
