"""The search page and the status page in a real browser: Debian's headless Chromium driven by
Playwright (the system browser; `playwright install` is never needed), against the app served by
uvicorn over the real test index. Screenshots go to test-artifacts/browser/."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from shared.classification.feedback import read_feedback
from tests.conftest import ARTIFACTS_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = ARTIFACTS_DIR / "browser"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), "Debian chromium is missing: run `make setup` (apt-get install chromium)"
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def cards(page: Page):
    return page.locator("#result-list > li.card")


def test_search_filter_account_and_feedback(page: Page, live_url, keys, corpus, redis_client):
    page.goto(f"{live_url}/#key={keys.internal}")
    expect(page.locator("#key-summary")).to_have_text("API key ✓")
    assert "key=" not in page.url  # taken out of the address bar once stored

    # type a query
    page.get_by_role("searchbox", name="What to look for").fill("easy vegan dinner recipes")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#summary")).to_contain_text(f"{len(corpus.posts)} posts match · showing 20 (more available)")
    assert cards(page).count() == 20
    first_ids = [int(i) for i in cards(page).evaluate_all("els => els.map(e => e.dataset.postId)")]
    assert sum(corpus.vertical_of(i) == "food" for i in first_ids[:5]) >= 4
    expect(page.locator("#summary")).to_contain_text(re.compile(r"embed [\d.]+, search [\d.]+, fetch [\d.]+"))
    page.screenshot(path=SHOTS / "1-results.png", full_page=True)

    # apply a filter: the platform facet shows counts, choosing one narrows the results
    instagram = page.get_by_role("checkbox", name=re.compile("instagram"))
    expected = sum(p.platform == "instagram" for p in corpus.posts.values())
    expect(page.locator("#platforms label", has_text="instagram").locator(".count")).to_have_text(str(expected))
    instagram.check()
    expect(page.locator("#summary")).to_contain_text(f"{expected} posts match · showing 20")
    page.get_by_role("button", name="Load more").click()  # the next page, by cursor
    expect(page.locator("#summary")).to_contain_text(f"showing {expected} ·")
    assert cards(page).count() == expected and page.get_by_role("button", name="Load more").is_hidden()
    platforms = cards(page).locator(".platform").all_inner_texts()
    assert platforms and {p.lower() for p in platforms} == {"instagram"}
    page.get_by_role("checkbox", name=re.compile(r"^food")).check()
    food = sum(p.platform == "instagram" and p.vertical == "food" for p in corpus.posts.values())
    expect(page.locator("#summary")).to_contain_text(f"{food} posts match")
    shown = [int(i) for i in cards(page).evaluate_all("els => els.map(e => e.dataset.postId)")]
    assert shown and all(corpus.posts[i].platform == "instagram" for i in shown)
    assert all("food" in labels for labels in cards(page).locator(".chips").all_inner_texts())
    page.screenshot(path=SHOTS / "2-filtered.png", full_page=True)

    # open an account
    card = cards(page).first
    post_id = int(card.get_attribute("data-post-id"))
    account = corpus.accounts[corpus.posts[post_id].account_id]
    card.get_by_role("button", name=f"@{account.handle}").click()
    view = page.locator("#account")
    expect(view).to_be_visible()
    expect(page.locator("#account-name")).to_contain_text(f"@{account.handle}")
    expect(page.locator("#account-summary")).to_contain_text("No summary yet")
    expect(page.locator("#account-verticals")).to_contain_text(account.vertical.replace("_", " & "))
    top_posts = page.locator("#account-posts > li")
    assert top_posts.count() == sum(p.account_id == account.id for p in corpus.posts.values())
    page.screenshot(path=SHOTS / "3-account.png", full_page=True)
    page.get_by_role("button", name="← Back to results").click()
    expect(page.locator("#results")).to_be_visible()

    # say a vertical is wrong
    chip = cards(page).first.locator(".chip", has_text="food")
    chip.get_by_role("button", name=re.compile("Wrong vertical: food")).click()
    dialog = page.get_by_role("dialog", name="Wrong vertical")
    expect(dialog).to_be_visible()
    dialog.get_by_label("What is right?").select_option("travel")
    dialog.get_by_label("Comment (optional)").fill("a beach trip, not a recipe")
    page.screenshot(path=SHOTS / "4-feedback.png", full_page=True)
    dialog.get_by_role("button", name="Send feedback").click()
    expect(page.locator("#toast")).to_have_text("Thanks: feedback recorded")
    _, feedback = read_feedback(redis_client, count=1)[0]
    assert (feedback.post_id, feedback.vertical, feedback.correct_vertical) == (post_id, "food", "travel")
    assert feedback.comment == "a beach trip, not a recipe" and feedback.tenant == "internal"


def test_accounts_search_and_a_bad_key_on_the_page(page: Page, live_url, keys, corpus):
    page.goto(f"{live_url}/#key={keys.internal}")
    page.get_by_label("Accounts").check()
    page.get_by_role("searchbox", name="What to look for").fill("travel vlog hidden beaches itinerary")
    page.get_by_role("searchbox", name="What to look for").press("Enter")
    expect(page.locator("#summary")).to_contain_text("ranked by their best matching posts")
    first = int(cards(page).first.get_attribute("data-account-id"))
    assert corpus.accounts[first].vertical == "travel"
    page.screenshot(path=SHOTS / "5-accounts.png", full_page=True)

    page.locator("#key-summary").click()
    page.get_by_label("Your API key (kept in this browser only)").fill("ik_0123456789ab_" + "x" * 43)
    page.get_by_role("button", name="Save key").click()
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("API key is missing or not valid")


def test_an_account_card_keeps_handle_followers_and_matches_apart(page: Page, live_url, keys, corpus):
    """Each part of an account's meta line is its own element, laid out with space between: bare text
    nodes in the flex row merged into one item ("@thetrailshannah24.1K followers3 matching posts")."""
    page.goto(f"{live_url}/#key={keys.internal}")
    page.get_by_label("Accounts").check()
    page.get_by_role("searchbox", name="What to look for").fill("travel vlog hidden beaches itinerary")
    page.get_by_role("searchbox", name="What to look for").press("Enter")
    card = cards(page).first
    expect(card).to_be_visible()
    account = corpus.accounts[int(card.get_attribute("data-account-id"))]
    parts = card.locator(".meta > *")
    texts = parts.all_inner_texts()
    assert len(texts) == 4 and [texts[0].lower(), texts[1]] == [account.platform, f"@{account.handle}"], texts
    assert re.fullmatch(r"[\d.]+[KMB]? followers", texts[2]) and re.fullmatch(r"\d+ matching posts", texts[3]), texts
    boxes = [parts.nth(i).bounding_box() for i in range(len(texts))]
    for left, right in zip(boxes, boxes[1:]):
        assert right["x"] - (left["x"] + left["width"]) >= 4, (texts, boxes)  # the row's gap, not glued text
    page.screenshot(path=SHOTS / "6-account-meta.png", full_page=True)


def test_every_control_has_a_label(page: Page, live_url, keys):
    page.goto(f"{live_url}/#key={keys.internal}")
    page.get_by_role("searchbox", name="What to look for").fill("gym")
    page.get_by_role("searchbox", name="What to look for").press("Enter")
    expect(cards(page).first).to_be_visible()
    unlabelled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter(el => !el.closest('[hidden]') && !el.labels?.length && !el.getAttribute('aria-label')
                      && !(el.tagName === 'BUTTON' && el.textContent.trim()))
        .map(el => el.outerHTML)""")
    assert unlabelled == []


def test_status_page_shows_the_pipeline(page: Page, live_url, keys):
    page.goto(f"{live_url}/status#key={keys.internal}")
    expect(page.locator("#services tr")).to_have_count(5)  # cdc, viability, embedder, classifier, indexer
    expect(page.locator("#services")).to_contain_text("embedder")
    expect(page.locator("#services")).to_contain_text("classifier")
    expect(page.locator("#index")).to_contain_text("Points")
    expect(page.locator("#spend")).to_contain_text("$")
    expect(page.locator("#freshness")).not_to_be_empty()
    expect(page.locator("#sweep")).to_contain_text("Viability sweep")  # no viability /metrics here: "no run yet"
    page.screenshot(path=SHOTS / "6-status.png", full_page=True)
