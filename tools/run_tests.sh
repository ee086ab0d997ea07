#!/usr/bin/env bash
# Run the test suite (creates .venv first when missing).
#   bash tools/run_tests.sh            default suite (what CI runs)
#   bash tools/run_tests.sh --slow     only the tests marked slow
#   extra arguments go to pytest
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$root/tools/setup_env.sh" | tail -n 1)"
cd "$root"
marker=(-m "not slow")
if [ "${1:-}" = "--slow" ]; then
    marker=(-m "slow"); shift
fi
exec "$py" -m pytest "${marker[@]}" -n 2 "$@"
