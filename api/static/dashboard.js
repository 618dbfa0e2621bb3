// The mbd dashboard: polls the API's JSON endpoints and redraws. No libraries, no outside assets.
// Every value from the API is set with textContent, never parsed as HTML.
"use strict";

const REFRESH_MS = Number(document.body.dataset.refreshMs) || 2000;
const PHONES_SHOWN = 200;
let shownModel = null; // the promoted version whose details are on the page

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.appendChild(cell instanceof Node ? cell : el("td", cell));
  return tr;
}

function fixed(value, digits = 3) {
  return typeof value === "number" ? value.toFixed(digits) : "–";
}

function rate(value, unit) {
  return typeof value === "number" ? `${value.toFixed(1)} ${unit}/s` : "–";
}

function ageText(seconds) {
  if (typeof seconds !== "number") return "–";
  if (seconds < 90) return `${seconds.toFixed(0)} s`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(0)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// The read token travels in the HttpOnly cookie set when the page was opened with ?token=.
async function getJson(url) {
  const response = await fetch(url, { cache: "no-store", credentials: "same-origin" });
  if (!response.ok) {
    const error = new Error(`${url}: HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

function drawMix(mix, total) {
  const box = $("mix");
  box.replaceChildren();
  const entries = Object.entries(mix).sort((a, b) => b[1] - a[1]);
  if (!entries.length) {
    box.appendChild(el("p", "no phones yet", "muted"));
    return;
  }
  for (const [activity, count] of entries) {
    const line = el("div", null, "mix-row");
    line.dataset.activity = activity;
    line.appendChild(el("span", activity, `activity ${activity}`));
    const bar = el("div", null, "mix-bar");
    bar.style.width = `${(100 * count) / Math.max(total, 1)}%`;
    line.appendChild(bar);
    line.appendChild(el("span", `${count}`));
    box.appendChild(line);
  }
}

function drawPhones(page) {
  const body = $("phones").querySelector("tbody");
  body.replaceChildren();
  for (const phone of page.items) {
    const confidence = phone.probabilities[phone.activity];
    const activity = el("td");
    activity.appendChild(el("span", phone.activity, `activity ${phone.activity}`));
    const age = el("td", ageText(phone.age_s), phone.age_s > 60 ? "stale" : "");
    const tr = row([el("td", phone.device_id), activity, fixed(confidence, 2), age,
                    `v${phone.model_version}`]);
    tr.dataset.deviceId = phone.device_id;
    body.appendChild(tr);
  }
  const more = page.total - page.items.length;
  $("phones-more").textContent = more > 0 ? `and ${more} more (see /v1/devices?offset=${page.items.length})` : "";
  $("phone-count").textContent = String(page.total);
  $("phone-note").textContent = `heard from in the last ${ageText(page.within_s)}`;
  drawMix(page.activities, page.total);
}

function drawModels(models) {
  const badge = $("model-badge");
  badge.textContent = models.serving ? `serving v${models.serving}` : "no model serving";
  badge.className = models.serving ? "badge" : "badge bad";
  if (models.promoted && models.serving !== models.promoted) {
    badge.textContent += ` (v${models.promoted} promoted, not loaded)`;
    badge.className = "badge bad";
  }
  const body = $("models").querySelector("tbody");
  body.replaceChildren();
  for (const m of [...models.versions].reverse()) {
    const state = [m.promoted ? "promoted" : "", m.serving ? "serving" : ""].filter(Boolean).join(", ");
    const tr = row([`v${m.version}`, new Date(m.created_at).toLocaleString(), fixed(m.macro_f1),
                    fixed(m.accuracy), m.train_windows ?? "–", state]);
    tr.dataset.version = m.version;
    body.appendChild(tr);
  }
}

function drawCurrentModel(model) {
  $("current-model").hidden = false;
  $("current-title").textContent =
    `Promoted model v${model.version}: macro-F1 ${fixed(model.macro_f1)}, accuracy ${fixed(model.accuracy)}`;
  const perClass = $("per-class").querySelector("tbody");
  perClass.replaceChildren();
  for (const [name, figures] of Object.entries(model.metrics.per_class || {})) {
    perClass.appendChild(row([name, fixed(figures.precision), fixed(figures.recall), fixed(figures.f1),
                              figures.support ?? "–"]));
  }
  const matrix = model.metrics.confusion_matrix || [];
  const classes = model.classes.length ? model.classes : model.metrics.classes || [];
  const table = $("confusion");
  table.replaceChildren();
  if (matrix.length) {
    table.appendChild(row([el("th", ""), ...classes.map((c) => el("th", c))]));
    matrix.forEach((counts, i) => {
      table.appendChild(row([el("th", classes[i] ?? i),
                             ...counts.map((n, j) => el("td", n, i === j ? "hit" : ""))]));
    });
  }
  const image = $("report");
  if (model.report_url) {
    image.src = `${model.report_url}?v=${model.version}`;
    image.hidden = false;
  } else {
    image.hidden = true;
  }
}

function drawStats(stats) {
  const gateway = stats.gateway;
  if (gateway.available) {
    $("gateway-rate").textContent = rate(gateway.batches_per_s, "batches");
    $("gateway-note").textContent = `${rate(gateway.readings_per_s, "readings")} accepted`;
  } else {
    $("gateway-rate").textContent = "–";
    $("gateway-note").textContent = gateway.reason || "unavailable";
  }
  const stream = stats.stream;
  if (stream.available) {
    $("stream-rate").textContent = rate(stream.input_rows_per_s, "records");
    const totals = stream.totals || {};
    $("stream-note").textContent =
      `batch ${stream.batch_id ?? "–"} ${ageText(stream.age_s)} ago` +
      (totals.windows !== undefined ? `; ${totals.windows} windows written since it started` : "");
  } else {
    $("stream-rate").textContent = "–";
    $("stream-note").textContent = stream.reason || "unavailable";
  }
  const api = stats.api;
  $("prediction-rate").textContent = rate(api.predictions_per_s, "predictions");
  $("prediction-note").textContent = api.reader_running
    ? `${api.predictions_total} read, ${api.malformed_total} malformed skipped`
    : api.reader_error || "reader stopped";
}

async function refresh() {
  const jobs = [
    getJson(`/v1/devices?limit=${PHONES_SHOWN}`).then(drawPhones),
    getJson("/v1/models").then(async (models) => {
      drawModels(models);
      if (models.promoted && models.promoted !== shownModel) {
        drawCurrentModel(await getJson("/v1/models/current"));
        shownModel = models.promoted;
      }
    }),
    getJson("/v1/stats").then(drawStats),
  ];
  const results = await Promise.allSettled(jobs);
  const rejected = results.filter((r) => r.status === "rejected").map((r) => r.reason);
  const failed = rejected.map((reason) => reason.message);
  if (rejected.some((reason) => reason.status === 401)) {
    failed.unshift("the read token is no longer accepted: open the URL `mbd up` printed again");
  }
  $("updated").textContent = failed.length
    ? `update failed: ${failed.join("; ")}`
    : `updated ${new Date().toLocaleTimeString()}`;
  setTimeout(refresh, REFRESH_MS);
}

$("refresh-every").textContent = (REFRESH_MS / 1000).toString();
refresh();
