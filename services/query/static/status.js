// The status page: polls GET /v1/status every 5 s with the key saved by the search page.
import { call, el, number, takeKeyFromUrl } from "/static/api.js";

const $ = (id) => document.getElementById(id);
const dash = "–";
const duration = (s) => (s < 120 ? `${s.toFixed(2)} s` : s < 7200 ? `${(s / 60).toFixed(1)} min`
  : s < 172800 ? `${(s / 3600).toFixed(1)} h` : `${(s / 86400).toFixed(0)} days`);
const fmt = (value, suffix = "") => (value === null || value === undefined ? dash : `${number.format(value)}${suffix}`);

function render(s) {
  $("updated").textContent = `Updated ${new Date(s.generated_at_ms).toLocaleTimeString()}` +
    (s.kafka.reachable ? "" : ` · Kafka unreachable: ${s.kafka.problem}`);
  $("services").replaceChildren(...s.services.map((x) => el("tr", {},
    el("th", { scope: "row" }, x.service),
    el("td", { class: x.lag > 1000 ? "bad" : "" }, x.consumer_group ? fmt(x.lag) : "producer"),
    el("td", {}, x.throughput_per_s === null ? dash : `${x.throughput_per_s.toFixed(1)}/s`),
    el("td", { class: x.dlq_messages ? "bad" : "" }, fmt(x.dlq_messages)),
    el("td", { class: x.errors ? "bad" : "" }, fmt(x.errors)),
    el("td", { class: x.poison_messages ? "bad" : "" }, fmt(x.poison_messages)),
    el("td", {}, fmt(x.dependency_retries)),
    el("td", {}, x.problem || x.metrics))));
  const sweep = s.services.find((x) => x.sweep)?.sweep;
  $("sweep").textContent = sweep
    ? `Viability sweep as of ${new Date(sweep.as_of_ms).toLocaleTimeString()}: ${fmt(sweep.accounts_checked)} ` +
      `accounts checked, ${fmt(sweep.accounts_purged)} purged (${fmt(sweep.accounts_purged_total)} since start).`
    : "Viability sweep: no run reported yet.";
  const f = s.freshness;
  $("freshness").textContent = f.samples
    ? `Commit → searchable: p50 ${duration(f.p50_s)}, p95 ${duration(f.p95_s)}, max ${duration(f.max_s)} ` +
      `over ${f.samples} changes in the last ${Math.round(f.window_s / 60)} min.`
    : `No live change indexed in the last ${Math.round(f.window_s / 60)} min.`;
  $("caches").replaceChildren(...(s.caches.length ? s.caches.map((c) => el("tr", {},
    el("th", { scope: "row" }, c.cache), el("td", {}, c.service),
    el("td", {}, c.hit_rate === null ? dash : `${(c.hit_rate * 100).toFixed(1)}%`),
    el("td", {}, fmt(c.hits)), el("td", {}, fmt(c.misses)), el("td", { class: c.errors ? "bad" : "" }, fmt(c.errors))))
    : [el("tr", {}, el("td", { colSpan: 6 }, "No cache counters reachable yet."))]));
  const i = s.index;
  const versions = i.versions.map((v) => `${v.active ? "▶ " : ""}${v.collection} (v${v.version}, ${v.stage}, ` +
    `${v.model_variant}, ${number.format(v.points)} points)`).join(" · ");
  const pairs = [["Active index version", i.collection], ["Versions", versions || "one (no replays)"],
    ["Points", number.format(i.points)],
    ["With keyword vectors", number.format(i.keyword_vectors)], ["Layout", i.layout],
    ["Query embedding model", i.embedding_model],
    ["Models in the index", i.models_in_index.map((m) => `${m.model_id} (${number.format(m.points)})`).join(", ") || dash],
    ["Keyword model", i.sparse_model], ["Indexer in this process", s.indexer_running ? "running" : "not running"]];
  $("index").replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  $("spend").textContent = `$${s.llm_spend.usd.toFixed(2)} over ${s.llm_spend.calls} calls (${s.llm_spend_note}).`;
}

async function refresh() {
  try {
    render(await call("GET", "/v1/status"));
    $("error").hidden = true;
  } catch (error) {
    $("error").hidden = false;
    $("error").textContent = error.message;
  }
}

takeKeyFromUrl();
refresh();
setInterval(refresh, 5000);
