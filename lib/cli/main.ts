#!/usr/bin/env node
/**
 * Entry point of the `hostbroker` command (package.json `bin`).
 * @module
 */
import { run } from './program.js';

const { exitCode } = await run(process.argv.slice(2));
// Sessions are closed; exit now rather than wait for idle sockets of provider SDKs.
process.exitCode = exitCode;
setImmediate(() => process.exit(exitCode));
