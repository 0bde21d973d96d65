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

# The libvirt binding is a native addon that builds only against libvirt-dev, so it is not a
# devDependency (a fresh `npm install` would fail on it before the set-up above installed the
# headers). Once libvirt-dev is here it is installed from its own pinned lock in
# scripts/libvirt-binding and linked into node_modules; a copy the user installed is rebuilt.
# (Importing the package is not enough: it loads the addon on the first `new Hypervisor`.)
loads() { node -e 'require(require("node:path").resolve(process.argv[1], "build/Release/libvirt.node"))' "$1" 2>/dev/null; }
binding=scripts/libvirt-binding/node_modules/@unraid/libvirt
if ! loads node_modules/@unraid/libvirt; then
  if ! pkg-config --exists libvirt 2>/dev/null; then
    echo "npm test: libvirt-dev is missing, so @unraid/libvirt is not installed; the libvirt tests will say so" >&2
  elif [ -d node_modules/@unraid/libvirt ] && [ ! -L node_modules/@unraid/libvirt ]; then
    echo "== rebuilding @unraid/libvirt (its native addon did not load; libvirt-dev is installed now)"
    npm rebuild @unraid/libvirt --foreground-scripts
  else
    if ! loads "$binding"; then
      echo "== installing @unraid/libvirt from scripts/libvirt-binding (the libvirt provider's optional binding)"
      npm ci --prefix scripts/libvirt-binding --no-audit --no-fund
    fi
    mkdir -p node_modules/@unraid
    ln -sfn "../../$binding" node_modules/@unraid/libvirt
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
