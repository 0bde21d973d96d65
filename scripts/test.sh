#!/usr/bin/env bash
# `npm test`: prepares what the tests need (system packages, the Podman API service, local images),
# type-checks, runs the whole suite, then the example suites. Arguments go to vitest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  bash scripts/setup-test-env.sh
elif sudo -n true 2>/dev/null; then
  sudo -n bash scripts/setup-test-env.sh
elif [ "${CI:-}" = "true" ]; then
  echo "npm test: CI needs root (or password-less sudo) to run scripts/setup-test-env.sh" >&2
  exit 1
else
  echo "npm test: not root, so scripts/setup-test-env.sh was not run; tests that need sshd, Podman or libvirt skip and say why (run 'sudo bash scripts/setup-test-env.sh' once)." >&2
fi

# `npm install` may have run before libvirt-dev was installed (the README's two commands): the
# optional native binding then failed to build, quietly. Rebuild it now that its headers are here.
# (Importing the package is not enough: it loads the addon on the first `new Hypervisor`.)
addon=node_modules/@unraid/libvirt/build/Release/libvirt.node
if [ -d node_modules/@unraid/libvirt ] && ! node -e 'require(require("node:path").resolve(process.argv[1]))' "$addon" 2>/dev/null; then
  if pkg-config --exists libvirt 2>/dev/null; then
    echo "== rebuilding @unraid/libvirt (its native addon did not load; libvirt-dev is installed now)"
    npm rebuild @unraid/libvirt --foreground-scripts
  else
    echo "npm test: @unraid/libvirt's addon does not load and libvirt-dev is missing; the libvirt tests will say so" >&2
  fi
fi

echo "== formatter and linter (biome), type check and build"
npx biome check .
npx tsc --noEmit -p .
npm run build --silent
# Tests that start the CLI as a process use the fresh build (no TypeScript compile per start).
export HB_TEST_BUILT=1

echo "== test suite"
npx vitest run "$@"

if [ $# -eq 0 ]; then
  echo "== example suites"
  for config in examples/*/vitest.config.ts; do
    npx vitest run --config "$config"
  done
fi
