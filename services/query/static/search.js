// The search page: posts or accounts, filters with facet counts, result cards, an account view
// and "wrong vertical" feedback. Plain ES modules: no build step.
import { apiKey, call, el, forgetKey, number, saveKey, takeKeyFromUrl } from "/static/api.js";

const $ = (id) => document.getElementById(id);
const state = { taxonomies: [], cursor: null, feedbackFor: null, lastResults: 0, matching: null };

function showError(error) {
  $("error").hidden = !error;
  $("error").textContent = error ? error.message : "";
}

function toast(text) {
  $("toast").textContent = text;
  setTimeout(() => { if ($("toast").textContent === text) $("toast").textContent = ""; }, 4000);
}

// --- API key -----------------------------------------------------------------------------------

function renderKeyState() {
  $("key-summary").textContent = apiKey() ? "API key ✓" : "API key (not set)";
  $("key-panel").open = !apiKey();
}

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  saveKey($("api-key").value);
  $("api-key").value = "";
  renderKeyState();
  toast("Key saved in this browser");
  await loadTaxonomies();
});
$("key-clear").addEventListener("click", () => { forgetKey(); renderKeyState(); });

// --- filters -----------------------------------------------------------------------------------

function taxonomy() { return state.taxonomies.find((t) => t.name === $("taxonomy").value); }

async function loadTaxonomies() {
  if (!apiKey()) return;
  try {
    state.taxonomies = (await call("GET", "/v1/taxonomies")).taxonomies;
    showError(null);
  } catch (error) { showError(error); return; }
  const select = $("taxonomy");
  select.replaceChildren(...state.taxonomies.map((t) => el("option", { value: t.name }, t.name)));
  select.value = state.taxonomies.some((t) => t.name === "default") ? "default" : select.value;
  renderVerticalOptions();
}

function renderVerticalOptions(counts = new Map()) {
  const chosen = new Set(checked("vertical"));
  const boxes = (taxonomy()?.verticals || []).filter((v) => v.enabled).map((v) => checkbox(
    "vertical", v.name, v.name.replace("_", " & "), counts.get(v.name), chosen.has(v.name), v.description));
  $("verticals").replaceChildren(...boxes);
}

function renderPlatformOptions(facet) {
  if (!facet) return;
  const chosen = new Set(checked("platform"));
  $("platforms").replaceChildren(el("legend", {}, "Platform"),
    ...facet.map((f) => checkbox("platform", f.value, f.value, f.count, chosen.has(f.value))));
}

function checkbox(name, value, label, count, isChecked, title) {
  return el("label", { class: "check", title },
    el("span", {}, el("input", { type: "checkbox", name, value, checked: isChecked }), " ", label),
    el("span", { class: "count", "aria-label": count === undefined ? undefined : `${count} posts` },
      count === undefined ? "" : number.format(count)));
}

function checked(name) {
  return [...document.querySelectorAll(`#filters input[name=${name}]:checked`)].map((i) => i.value);
}

function dateValue(id) { return $(id).value ? `${$(id).value}T00:00:00Z` : undefined; }
function intValue(id) { return $(id).value === "" ? undefined : Number($(id).value); }

// 0 = leave it to the server's label floor (labels under it are neither shown nor counted).
function minConfidence() { const value = Number($("min-confidence").value); return value > 0 ? value : undefined; }

function filters() {
  const chosen = { platform: checked("platform"), vertical: checked("vertical") };
  const result = {
    platform: chosen.platform.length ? chosen.platform : undefined,
    verticals: chosen.vertical.length ? {
      taxonomy: $("taxonomy").value, verticals: chosen.vertical, min_confidence: minConfidence(),
    } : undefined,
    published_after: dateValue("published-after"),
    published_before: dateValue("published-before"),
    min_views: intValue("min-views"),
    min_likes: intValue("min-likes"),
  };
  return Object.fromEntries(Object.entries(result).filter(([, v]) => v !== undefined));
}

$("filters").addEventListener("change", (event) => {
  if (event.target.id === "taxonomy") renderVerticalOptions();
  $("min-confidence-value").textContent = minConfidence() ? `${Math.round(minConfidence() * 100)}%` : "floor";
  if ($("q").value.trim()) search();
});
$("filters").addEventListener("reset", () => setTimeout(() => {
  $("min-confidence-value").textContent = "floor";
  renderVerticalOptions();
  if ($("q").value.trim()) search();
}));

// --- search ------------------------------------------------------------------------------------

function target() { return document.querySelector("input[name=target]:checked").value; }

$("search-form").addEventListener("submit", (event) => { event.preventDefault(); search(); });
$("more").addEventListener("click", () => search(state.cursor));

async function search(cursor = null) {
  const query = $("q").value.trim();
  if (!query) return;
  showAccountView(false);
  $("search-button").disabled = true;
  try {
    if (target() === "accounts") await searchAccounts(query);
    else await searchPosts(query, cursor);
    showError(null);
  } catch (error) {
    showError(error);
    $("summary").textContent = "No results.";
  } finally {
    $("search-button").disabled = false;
  }
}

async function searchPosts(query, cursor) {
  const body = { query, mode: $("mode").value, limit: 20, filters: filters() };
  if (cursor) { body.cursor = cursor; body.facets = []; }
  const page = await call("POST", "/v1/search/posts", body);
  const cards = page.results.map(postCard);
  if (cursor) $("result-list").append(...cards); else $("result-list").replaceChildren(...cards);
  state.cursor = page.next_cursor;
  state.lastResults = (cursor ? state.lastResults : 0) + page.results.length;
  $("more").hidden = !page.next_cursor;
  if (page.facets) {
    renderPlatformOptions(page.facets.platform);
    const counts = new Map((page.facets.vertical || []).filter((f) => f.taxonomy === $("taxonomy").value)
      .map((f) => [f.vertical, f.count]));
    renderVerticalOptions(counts);
  }
  if (page.facets && page.facets.platform && body.mode !== "keyword") {
    // Every post has one platform: the platform counts add up to the posts matching the filters.
    const wanted = body.filters.platform;
    state.matching = page.facets.platform.filter((f) => !wanted || wanted.includes(f.value))
      .reduce((sum, f) => sum + f.count, 0);
  } else if (!cursor) state.matching = null;
  const total = state.matching === null ? "" : `${state.matching} posts match · `;
  $("summary").textContent = `${total}showing ${state.lastResults}` +
    `${page.next_cursor ? " (more available)" : ""} · ${timingText(page.timings)}`;
}

async function searchAccounts(query) {
  const f = filters();
  const page = await call("POST", "/v1/search/accounts", {
    query, limit: 20, filters: { platform: f.platform, verticals: f.verticals },
  });
  $("result-list").replaceChildren(...page.results.map(accountCard));
  $("more").hidden = true;
  const how = page.source === "post_hits" ? "ranked by their best matching posts (no summaries yet)"
    : "ranked by what their posts are about";
  $("summary").textContent = `${page.results.length} accounts, ${how} · ${timingText(page.timings)}`;
}

function timingText(t) {
  return `${Math.round(t.total_ms)} ms (embed ${t.embed_ms.toFixed(1)}, search ${t.search_ms.toFixed(1)}, ` +
    `fetch ${t.fetch_ms.toFixed(1)})`;
}

// --- cards -------------------------------------------------------------------------------------

function postCard(hit) {
  const post = hit.post;
  const title = post.url ? el("a", { href: post.url, target: "_blank", rel: "noopener noreferrer" }, post.title)
    : post.title;
  return el("li", { class: "card", "data-post-id": post.post_id },
    el("article", { "aria-label": post.title },
      el("h3", {}, title),
      el("p", { class: "meta" },
        el("span", { class: "platform" }, post.platform),
        el("button", { type: "button", class: "account-link", onclick: () => openAccount(post.account_id) },
          `@${post.handle}`),
        el("span", {}, `${number.format(post.followers)} followers`),
        el("time", { dateTime: new Date(post.published_at).toISOString() },
          new Date(post.published_at).toLocaleDateString("en", { year: "numeric", month: "short", day: "numeric" })),
        el("span", {}, `${number.format(post.views)} views · ${number.format(post.likes)} likes`)),
      post.description ? el("p", {}, post.description.slice(0, 280)) : null,
      verticalChips(post)));
}

function verticalChips(post) {
  if (!post.verticals.length) return el("p", { class: "hint" }, "No verticals yet");
  return el("ul", { class: "chips", "aria-label": "Verticals" }, post.verticals.map((v) =>
    el("li", { class: "chip" },
      el("span", {}, `${v.taxonomy === "default" ? "" : `${v.taxonomy}: `}${v.vertical.replace("_", " & ")} ` +
        `${Math.round(v.confidence * 100)}%`),
      el("button", {
        type: "button", class: "wrong", "aria-label": `Wrong vertical: ${v.vertical} for “${post.title}”`,
        onclick: () => openFeedback(post, v),
      }, "Wrong?"))));
}

function accountCard(hit) {
  const a = hit.account;
  return el("li", { class: "card", "data-account-id": a.account_id },
    el("article", { "aria-label": a.display_name || a.handle },
      el("h3", {}, el("button", { type: "button", class: "account-link", onclick: () => openAccount(a.account_id) },
        a.display_name || a.handle)),
      // One element per part: bare text nodes in the flex row merge into one item, without the gap.
      el("p", { class: "meta" }, el("span", { class: "platform" }, a.platform), el("span", {}, `@${a.handle}`),
        el("span", {}, `${number.format(a.followers)} followers`),
        hit.matching_posts ? el("span", {}, `${hit.matching_posts} matching posts`) : null),
      hit.summary ? el("p", {}, hit.summary) : null,
      hit.top_posts.length ? el("ul", {}, hit.top_posts.map((p) => el("li", {}, p.post.title))) : null));
}

// --- account view ------------------------------------------------------------------------------

function showAccountView(show) {
  $("account").hidden = !show;
  $("results").hidden = show;
}

async function openAccount(accountId) {
  try {
    const account = await call("GET", `/v1/accounts/${accountId}`);
    const a = account.account;
    $("account-name").textContent = a.display_name ? `${a.display_name} (@${a.handle})` : `@${a.handle}`;
    $("account-meta").replaceChildren(el("span", { class: "platform" }, a.platform),
      el("span", {}, `${number.format(a.followers)} followers`), el("span", {}, `${account.post_count} indexed posts`));
    $("account-summary").textContent = account.summary ||
      "No summary yet: summaries appear once the summarizer has processed this account.";
    $("account-verticals").replaceChildren(...account.verticals.filter((v) => v.taxonomy === ($("taxonomy").value || "default"))
      .map((v) => el("li", { class: "chip" }, `${v.vertical.replace("_", " & ")} · ${Math.round(v.share * 100)}% of posts`)));
    $("account-posts").replaceChildren(...account.top_posts.map(postCard));
    showError(null);
    showAccountView(true);
    $("account").focus();
  } catch (error) { showError(error); }
}

$("back").addEventListener("click", () => { showAccountView(false); $("results").focus(); });

// --- feedback ----------------------------------------------------------------------------------

function openFeedback(post, label) {
  state.feedbackFor = { post, label };
  $("feedback-what").textContent = `“${post.title}” is labelled ${label.vertical} (${label.taxonomy}).`;
  const verticals = (state.taxonomies.find((t) => t.name === label.taxonomy)?.verticals || [])
    .filter((v) => v.name !== label.vertical);
  $("feedback-correct").replaceChildren(el("option", { value: "" }, "Not sure / none of these"),
    ...verticals.map((v) => el("option", { value: v.name }, v.name.replace("_", " & "))));
  $("feedback-comment").value = "";
  $("feedback").showModal();
}

$("feedback-cancel").addEventListener("click", () => $("feedback").close());
$("feedback-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { post, label } = state.feedbackFor;
  try {
    await call("POST", "/v1/feedback", {
      post_id: post.post_id, taxonomy: label.taxonomy, vertical: label.vertical,
      correct_vertical: $("feedback-correct").value || null, comment: $("feedback-comment").value || null,
    });
    $("feedback").close();
    toast("Thanks: feedback recorded");
  } catch (error) {
    $("feedback").close();
    showError(error);
  }
});

// --- start -------------------------------------------------------------------------------------

takeKeyFromUrl();
renderKeyState();
loadTaxonomies();
