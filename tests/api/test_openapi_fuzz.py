"""schemathesis against the served app's OpenAPI: no 5xx, responses match their schemas (body,
status codes, content types, headers), invalid input is rejected, auth is not ignored.

Run as the CLI against the live server (what a CI job or a person would run), bounded by
--max-examples; the JSON report and the output land in test-artifacts/schemathesis/.

Not checked: positive_data_acceptance. It expects every schema-valid request to be accepted, but
taxonomy vertical names and cursors are data the schema cannot enumerate ("astrology" is a valid
name that is not a vertical): those answer a clear 422, as the API intends.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ARTIFACTS_DIR

MAX_EXAMPLES = 30
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,"
          "response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method,"
          "use_after_free,ensure_resource_availability,ignored_auth")


def test_schemathesis_finds_no_server_errors_or_schema_violations(live_url, keys):
    out_dir = ARTIFACTS_DIR / "schemathesis"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    report = out_dir / "report.json"
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", f"{live_url}/openapi.json",
        "--header", f"X-API-Key: {keys.internal}", "--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES),
        "--seed", "20251121", "--workers", "1",  # one worker: hypothesis' AST use is not thread-safe on 3.11
        "--request-timeout", "20", "--report", "json", "--report-json-path", str(report), "--no-color",
    ]
    # cwd: schemathesis keeps a cache folder (.schemathesis/) in its working directory.
    run = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=out_dir)
    (out_dir / "output.txt").write_text(run.stdout + run.stderr)
    summary = json.loads(report.read_text())
    stats = summary["test_cases"]
    print(f"schemathesis: {stats['generated']} cases over {summary['operations']['tested']} operations in "
          f"{summary['running_time']:.1f}s, {stats['with_failures']} with failures")
    assert run.returncode == 0, run.stdout[-6000:]
    assert summary["operations"]["tested"] == summary["operations"]["total"] >= 10
    assert stats["generated"] >= 300 and stats["with_failures"] == 0 and stats["errored"] == 0
