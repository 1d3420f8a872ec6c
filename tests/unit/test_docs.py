"""The README and docs/ state facts about the code; these tests hold them to it.

What is checked: links, file paths, make targets, modules and their command lines, environment
variables, metric names and dead-letter headers named on any page; then per page the facts that can
drift: the README's `make dev` lines and folder table, the API's routes and scopes, the performance
and classification figures against the result files they come from, the test and bench ports.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import inspect
import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from unittest import mock

import pytest
import yaml

from shared.config import PROJECT_ROOT
from shared.config_doc import variables

README = PROJECT_ROOT / "README.md"
DOCS = PROJECT_ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 150
# Read by the test fixtures and the benchmark harness, not by a settings class.
NOT_SETTINGS = {"TEST_MARIADB_PORT", "TEST_BROKER_PORT", "TEST_REDIS_PORT", "TEST_QUERY_PORT", "BENCH_MARIADB_PORT",
                "BENCH_BROKER_PORT", "BENCH_REDIS_PORT", "BENCH_API_PORT"}


def text(page: Path) -> str:
    return page.read_text()


def code_spans(page: Path) -> list[str]:
    """Inline `code` of a page (fenced blocks left out)."""
    prose = re.sub(r"```.*?```", "", text(page), flags=re.S)
    return re.findall(r"`([^`\n]+)`", prose)


def code_lines(page: Path) -> list[str]:
    """Lines of the page's fenced shell blocks, comments cut off."""
    lines = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text(page), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():  # continued lines are one command
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def page_id(page: Path) -> str:
    return str(page.relative_to(PROJECT_ROOT))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    heading = re.sub(r"[`*_\[\]()]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


# --- every page -----------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_links_resolve(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", text(page)):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page_id(page)} links to {target}: no such file"
        if anchor:
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.M)
            assert anchor in {slug(h) for h in headings}, f"{page_id(page)} links to {target}: no such heading"


def tracked_files() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          check=True).stdout.split()


TOP_LEVEL = {path.split("/")[0] for path in tracked_files()}


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_named_files_exist(page):
    for span in code_spans(page):
        candidate, _, test_name = (span.split()[0] if span.split() else "").partition("::")
        first = candidate.split("/")[0]
        if "/" not in candidate or first not in TOP_LEVEL or re.search(r"[<{…]", candidate):
            continue
        matches = list(PROJECT_ROOT.glob(candidate.rstrip("/"))) if "*" in candidate else \
            [PROJECT_ROOT / candidate] if (PROJECT_ROOT / candidate).exists() else []
        assert matches, f"{page_id(page)} names `{span}`: not in the repository"
        if test_name:
            assert f"def {test_name}(" in matches[0].read_text(), f"{page_id(page)} names `{span}`: no such test"


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (PROJECT_ROOT / "Makefile").read_text(), flags=re.M))


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_make_targets_exist(page):
    named = set(re.findall(r"`make ([a-z][\w-]*)", text(page)))
    named |= {m for line in code_lines(page) for m in re.findall(r"(?:^|\s)make ([a-z][\w-]*)", line)}
    assert not named - makefile_targets(), f"{page_id(page)}: no Makefile target {sorted(named - makefile_targets())}"


class _Parsed(Exception):
    pass


def parses(module: str, argv: list[str]) -> None:
    """Run the module's ``main(argv)`` up to its argument parsing: the command line is accepted (else
    argparse exits with 2), nothing after parsing runs."""
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        original(self, args, namespace)
        raise _Parsed

    main = importlib.import_module(module).main
    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop), pytest.raises(_Parsed):
        main(argv)


# `make <target>` lines: the module the Makefile runs and the arguments it adds.
MAKE_COMMANDS = {"replay": ("ops.replay", []), "llm-local": ("devstack.llm_local", [])}


def command_lines() -> list[tuple[str, str, list[str]]]:
    """(page, module, argv) for every documented command line of a Python CLI."""
    found = []
    for page in PAGES:
        for line in code_lines(page):
            words = shlex.split(line.replace("<key id>", "ik_example"))
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                words = words[1:]  # environment assignments
            if not words:
                continue
            if words[0].endswith("python") and words[1:2] == ["-m"]:
                found.append((page_id(page), words[2], words[3:]))
            elif words[0] == "make" and len(words) > 1 and words[1] in (*MAKE_COMMANDS, "eval"):
                assignments = dict(w.split("=", 1) for w in words[2:] if "=" in w)
                args = shlex.split(assignments.get("ARGS", ""))
                if words[1] == "eval":
                    module, extra = "ops.eval", ["--taxonomy", assignments.get("TAXONOMY", "default"),
                                                 "--data", assignments.get("DATA", "eval/data/creator_posts.jsonl")]
                else:
                    module, extra = MAKE_COMMANDS[words[1]]
                found.append((page_id(page), module, extra + args))
    return found


def test_documented_commands_are_found():
    modules = {module for _, module, _ in command_lines()}
    assert {"ops.replay", "ops.dlq", "ops.eval", "ops.llm_cost", "services.query.admin_keys"} <= modules


@pytest.mark.parametrize("page,module,argv", command_lines(), ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_documented_command_lines_are_accepted(page, module, argv):
    assert importlib.util.find_spec(module) is not None, f"{page}: no module {module}"
    if "--help" in argv:
        return
    parses(module, argv)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_modules_named_inline_exist(page):
    for span in code_spans(page):
        found = re.match(r"(?:\S*python3?) -m ([\w.]+)", span)
        if found:
            assert importlib.util.find_spec(found.group(1)) is not None, f"{page_id(page)}: no module in `{span}`"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_named_environment_variables_are_read(page):
    known = settings_variables() | NOT_SETTINGS
    families = {name.split("_")[0] for name in known}  # KAFKA, LLM, QUERY, ...: other constants are not env names
    named = set()
    for span in code_spans(page):
        # Whole names only: `LLM_PRICE_*` and `TEST_*_PORT` are families, not variables.
        named |= set(re.findall(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b", span))
    unknown = {name for name in named - known if name.split("_")[0] in families}
    assert not unknown, f"{page_id(page)} names {sorted(unknown)}: no settings class reads them"


@functools.cache
def settings_variables() -> frozenset[str]:
    return frozenset(v.name for v in variables())


@functools.cache
def source_text() -> str:
    return "\n".join(p.read_text() for d in ("shared", "services", "ops", "devstack")
                     for p in (PROJECT_ROOT / d).rglob("*.py"))


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_named_metrics_and_dead_letter_headers_exist(page):
    source = source_text()
    # Only names of a metric family the code defines (llm_, pipeline_, ...): `binlog_expire_logs_seconds`
    # is MariaDB's.
    families = {name.split("_")[0] for name in
                re.findall(r"(?:Counter|Gauge|Histogram|Summary)\(\s*\"([a-z0-9_]+)\"", source)}
    metrics = {m for span in code_spans(page)
               for m in re.findall(r"^([a-z][a-z0-9_]*_(?:total|seconds|share|distance|posts|accounts|limit))\b", span)
               if m.split("_")[0] in families}
    headers = {h for span in code_spans(page) for h in re.findall(r"^(dlq\.[a-z_.]+[a-z])$", span)}
    # prometheus_client adds _total to a counter declared without it.
    missing = [name for name in sorted(metrics | headers)
               if f'"{name}"' not in source and f'"{name.removesuffix("_total")}"' not in source]
    assert not missing, f"{page_id(page)} names {missing}: not in the code"


# --- the README -------------------------------------------------------------------------------------


def test_readme_is_short():
    lines = len(text(README).splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"


def test_readme_shows_the_two_commands_and_make_dev_prints_in_the_stacks_order():
    from devstack.stack import SERVICES

    readme = text(README)
    assert re.search(r"^make dev\s+#", readme, flags=re.M) and re.search(r"^make test\s+#", readme, flags=re.M)
    shown = re.findall(r"^  ✓ (\w+)\s", readme, flags=re.M)
    assert shown == ["mariadb", "broker", "redis", "seed", *SERVICES, "search"]


def test_readme_folder_table_covers_every_folder():
    tracked = tracked_files()
    folders = {path.split("/")[0] for path in tracked if "/" in path and not path.startswith(".")}
    folders |= {"/".join(path.split("/")[:2]) for path in tracked if path.startswith("services/")
                and path.count("/") >= 2}
    table = re.findall(r"^\| (.+?) \|", text(README), flags=re.M)
    named = {name.strip("`/") for row in table for name in re.findall(r"`([^`]+)`", row)}
    missing = {folder for folder in folders if folder not in named and not any(n.startswith(f"{folder}/") for n in named)}
    assert not missing, f"README's folder table lacks {sorted(missing)}"


# --- docs/api.md ------------------------------------------------------------------------------------


def served_routes() -> dict[str, str]:
    """'METHOD /path' -> scope of every /v1 operation in the app's OpenAPI; the scope is read from the
    route's dependencies (``deps.require(scope)``), '' for none."""
    import pkgutil

    from fastapi.routing import APIRoute

    import services.query.api.routes as routes_package
    from services.query.app import QuerySettings, create_app

    def scope_of(dependant) -> str:
        for dependency in dependant.dependencies:
            if getattr(dependency.call, "__name__", "") == "allowed_key":
                return inspect.getclosurevars(dependency.call).nonlocals["scope"].value
            found = scope_of(dependency)
            if found:
                return found
        return ""

    def key(method: str, path: str) -> str:
        return f"{method.upper()} {re.sub(r'{[^}]+}', '{}', path)}"

    scopes = {}
    for module in pkgutil.iter_modules(routes_package.__path__):
        router = importlib.import_module(f"{routes_package.__name__}.{module.name}").router
        for route in router.routes:
            if isinstance(route, APIRoute):
                scopes.update({key(method, route.path): scope_of(route.dependant) for method in route.methods})
    served = {key(method, path) for path, operations in create_app(QuerySettings()).openapi()["paths"].items()
              for method in operations if path.startswith("/v1/")}
    assert served <= set(scopes), f"routes not found in services/query/api/routes: {served - set(scopes)}"
    return {route: scopes[route] for route in served}


def test_api_route_table_matches_the_app():
    documented = {}
    for cells in re.findall(r"^\| `([^|]+)` \| (\w*) \|", text(DOCS / "api.md"), flags=re.M):
        for route in cells[0].split("`, `"):
            method, path = route.split(" ", 1)
            documented[f"{method} {re.sub(r'{[^}]+}', '{}', path.split('?')[0])}"] = cells[1]
    assert documented == served_routes()


# --- docs/performance.md against bench/results -----------------------------------------------------


def table_rows(page: Path) -> dict[str, list[str]]:
    rows = {}
    for line in text(page).splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows.setdefault(cells[0], cells[1:])
    return rows


def numbers(cell: str) -> list[float]:
    return [float(n.replace(",", "")) for n in re.findall(r"\d[\d,]*(?:\.\d+)?", cell)]


def near(documented: float, measured: float, digits: int) -> bool:
    return abs(documented - measured) <= 0.5 * 10 ** -digits + 1e-9


def test_performance_figures_are_the_result_files():
    small = json.loads((PROJECT_ROOT / "bench/results/2026-11-22-small.json").read_text())["benchmarks"]
    replay = json.loads((PROJECT_ROOT / "bench/results/2026-11-22-small-replay.json").read_text())["benchmarks"]
    rows = table_rows(DOCS / "performance.md")
    pipeline, overhead, search = small["model_vs_pipeline"]["summary"], small["overhead"]["summary"], \
        small["search"]["summary"]
    expected = {  # row -> (the first figures of its "measured" cell, decimals shown)
        "1. pipeline / raw model throughput": ([pipeline["pipeline_over_raw"], pipeline["pipeline_posts_per_s"],
                                                pipeline["raw_texts_per_s"]], [2, 0, 0]),
        "2. cdc (snapshot → Kafka)": ([overhead["cdc_events_per_s"]], [0]),
        "2. viability, steady state": ([overhead["viability_events_per_s"], overhead["viability_speedup"]], [0, 1]),
        "2. embedder, cache warm": ([overhead["embedder_events_per_s"]], [0]),
        "2. indexer (edge store)": ([overhead["indexer_events_per_s"]], [0]),
        "3. commit → searchable at 50 posts/s for 60 s, p50 / p95": (
            [small["freshness"]["summary"]["p50_ms"] / 1000, small["freshness"]["summary"]["p95_ms"] / 1000], [1, 1]),
        "4. search, 50 closed-loop clients, warm, p50 / p95": (
            [search["warm_p50_ms"], search["warm_p95_ms"], search["warm_rps"]], [0, 0, 0]),
        "4. search, same clients paced to 37 req/s, p50 / p95": ([search["paced_p50_ms"], search["paced_p95_ms"]], [0, 0]),
        "4. search, every query embedded, p50 / p95": (
            [search["cold_p50_ms"], search["cold_p95_ms"], search["cold_rps"]], [0, 0, 0]),
        "5. replay of 14,184 posts, cold / warm Redis": (
            [replay["replay"]["summary"]["cold_s"], replay["replay"]["summary"]["warm_s"],
             replay["replay"]["summary"]["cold_over_warm"]], [0, 1, 1]),
    }
    for row, (measured, digits) in expected.items():
        assert row in rows, f"docs/performance.md lost the row {row!r}"
        shown = numbers(rows[row][0])
        for i, (value, places) in enumerate(zip(measured, digits)):
            assert near(shown[i], value, places), f"{row}: shows {shown[i]}, the result file says {value}"


def test_summary_timing_is_the_result_file():
    result = json.loads((PROJECT_ROOT / "bench/results/2026-11-22-summarizer.json").read_text())
    page = " ".join(text(DOCS / "summaries.md").split())
    stated = re.search(r"times one summary of a ([\d,]+)-post account: ([\d.]+) s median .*?scroll ([\d.]+) s, "
                       r"vectors ([\d.]+) s, summarize ([\d.]+) s, embed and write ([\d.]+) s", page)
    assert stated, "docs/summaries.md no longer states the summary timing"
    posts, total, *stages = (float(n.replace(",", "")) for n in stated.groups())
    seconds = result["median_seconds"]
    assert posts == result["posts"] and near(total, seconds["total"], 1)
    for shown, stage in zip(stages, ("scroll", "vectors", "summarize", "embed_and_write")):
        assert near(shown, seconds[stage], 1), f"{stage}: {shown} != {seconds[stage]}"


# --- docs/classification.md against eval/results ----------------------------------------------------


def test_classification_quality_table_is_the_eval_results():
    rows = table_rows(DOCS / "classification.md")
    for row, result in (("`default` on 340 hand-written creator posts", "default-creator_posts"),
                        ("`news_topics` on 600 BBC News leads (public)", "news_topics-bbc_news")):
        report = json.loads((PROJECT_ROOT / "eval/results" / f"{result}.json").read_text())["reports"]["k=0"]
        texts, top1, micro_f1, precision, recall, macro_f1, uncertain, sure, unsure = numbers(" ".join(rows[row][:5]))
        assert texts == report["texts"]
        for shown, value in ((top1, report["top1_accuracy"]), (micro_f1, report["micro"]["f1"]),
                             (macro_f1, report["macro"]["f1"])):
            assert near(shown, value, 3), f"{row}: {shown} != {value}"
        assert near(precision, report["micro"]["precision"], 2) and near(recall, report["micro"]["recall"], 2)
        assert near(uncertain / 100, report["uncertain_share"], 2)
        assert near(sure, report["accuracy_confident"], 2) and near(unsure, report["accuracy_uncertain"], 2)


def test_the_default_taxonomy_has_the_verticals_the_docs_count():
    taxonomy = yaml.safe_load((PROJECT_ROOT / "config/taxonomies/default.yaml").read_text())
    stated = re.search(r"`default.yaml` has\s+the (\d+) demo verticals", text(DOCS / "classification.md"))
    assert stated and int(stated.group(1)) == len(taxonomy["verticals"])


# --- ports the pages state -------------------------------------------------------------------------


def test_test_and_bench_ports_are_the_defaults_of_the_code():
    from bench.harness import ports

    without_overrides = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    with mock.patch.dict(os.environ, without_overrides, clear=True):
        bench = ports()
    bench = (bench["mariadb"], bench["broker"], bench["redis"], bench["api"])
    tests = _conftest_defaults()
    readme, configuration, performance = (" ".join(text(page).split()) for page in
                                          (README, DOCS / "configuration.md", DOCS / "performance.md"))
    assert "(MariaDB {}, broker {}, Redis {}, API {};".format(*tests) in readme
    assert "(defaults {}, {}, {}, {};".format(*tests) in configuration
    assert "({}, {}, {}, {})".format(*bench) in configuration
    assert "(MariaDB {}, broker {}, Redis {}, API {};".format(*bench) in performance


def _conftest_defaults() -> tuple[int, ...]:
    """The defaults written in tests/conftest.py (the running session may override them)."""
    source = (PROJECT_ROOT / "tests" / "conftest.py").read_text()
    return tuple(int(re.search(rf'"TEST_{name}_PORT", "(\d+)"', source).group(1))
                 for name in ("MARIADB", "BROKER", "REDIS", "QUERY"))
