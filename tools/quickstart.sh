#!/usr/bin/env bash
# The main job (creates .venv first when missing): dataset -> CPU training -> evaluation
# -> demo -> latency. Arguments go to tools/quickstart.py (see --help).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$root/tools/setup_env.sh" | tail -n 1)"
cd "$root"
exec "$py" tools/quickstart.py "$@"
