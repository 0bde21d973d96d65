/**
 * `hostbroker serve`: the dashboard (see docs/dashboard.md) over the CLI's Broker, until SIGINT or
 * SIGTERM. A token made here is printed once, with a one-time login link.
 * @module
 */
import { type Command, InvalidArgumentError } from 'commander';
import type { CliContext, CommandResult } from './context.js';

interface ServeOpts {
  host?: string;
  port?: number;
  token?: boolean;
  newToken?: string;
}

function port(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) > 65535) throw new InvalidArgumentError(`expected a port from 0 to 65535, got ${JSON.stringify(value)}.`);
  return Number(value);
}

export function registerServeCommand(program: Command, ctx: CliContext, act: (fn: () => Promise<CommandResult>) => Promise<void>): void {
  program
    .command('serve')
    .description('serve the dashboard: hosts, leases, kept hosts and deployments, live, in a browser')
    .option('--host <address>', 'address to listen on; anything but loopback needs a token', '127.0.0.1')
    .option('--port <n>', 'port to listen on (0: any free one)', port, 8040)
    .option('--token', 'require a token on loopback too (made if none exists)')
    .option('--new-token <name>', 'make a token for this person (replacing one of that name) and print it once')
    .action((opts: ServeOpts) =>
      act(async () => {
        const { startDashboard } = await import('../dashboard/server.js');
        const broker = ctx.broker();
        if (opts.newToken) {
          const { DashboardAuth } = await import('../dashboard/auth.js');
          const token = await new DashboardAuth(broker.directory).createToken(opts.newToken);
          printToken(ctx, opts.newToken, token);
        }
        const dashboard = await startDashboard(broker, { host: opts.host ?? '127.0.0.1', port: opts.port ?? 8040, ...(opts.token ? { token: true } : {}) });
        const out = ctx.io.stderr;
        out.write(`hostbroker: dashboard at ${dashboard.url} (inventory of ${broker.directory}); Ctrl-C stops it\n`);
        if (dashboard.newToken) printToken(ctx, dashboard.newToken.name, dashboard.newToken.token);
        if (dashboard.auth.enabled) {
          const name = dashboard.newToken?.name ?? opts.newToken ?? broker.owner;
          out.write(`hostbroker: one-time login link (10 minutes): ${dashboard.loginUrl(name)}\n`);
        }
        await ctx.interruptible((signal) => new Promise((done) => signal.addEventListener('abort', done, { once: true })), {
          stopping: (again) => `stopping the dashboard (${again})`,
          exiting: () => 'the dashboard stopped; no host was changed by stopping it.',
        });
        await dashboard.close();
        return { data: { url: dashboard.url, stopped: true }, text: 'dashboard stopped\n' };
      }),
    );
}

/** The only time a token is shown: it is stored as a hash. */
function printToken(ctx: CliContext, name: string, token: string): void {
  ctx.io.stderr.write(
    `hostbroker: new dashboard token for ${name} (shown once; only its hash is stored): ${token}\n` +
      "hostbroker: send it as 'Authorization: Bearer <token>', or paste it into the page's sign-in box\n",
  );
}
