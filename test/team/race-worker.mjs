// One racing worker of test/team/race.test.ts: a separate process with its own Broker on a broker
// directory standing for one machine, checking `static` machines out of the team's etcd inventory
// and marking each one exclusively from inside (noclobber) while it holds it. Plain JS, so it runs
// on the built library (node) and on the sources (node --import tsx) alike.
// argv: <library module> <cycles> <marks dir> [stall]
// Prints JSON lines: ready, cycle, stale, double, lost, reaped, error, fenced, done (stall: holding, late-write).
const [library, cyclesText, marks, mode] = process.argv.slice(2);
const { Broker } = await import(library);
const say = (event) => process.stdout.write(`${JSON.stringify({ pid: process.pid, ...event })}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const broker = new Broker({ directory: process.env.BROKER_DIRECTORY });

/** Marks the machine as ours from inside it; the holder's record id when someone else's mark is there. */
async function mark(host) {
  const path = `${marks}/${host.name}`;
  for (;;) {
    const r = await host.execute(`set -o noclobber; { echo ${host.id} > ${path}; } 2>/dev/null && echo ok || cat ${path}`);
    const out = r.stdout.trim();
    if (out === 'ok') return undefined;
    if (r.status !== 0 || !out) throw new Error(`marking ${host.name} failed (status ${r.status}): ${r.stderr}`);
    // A mark left by a holder that died (its record was reaped) is stale; a live holder's is a double.
    if (out && (await broker.find(out))) return out;
    say({ ev: 'stale', machine: host.name, holder: out });
    await host.execute(`[ "$(cat ${path} 2>/dev/null)" = "${out}" ] && rm -f ${path}; true`);
  }
}

async function unmark(host) {
  const path = `${marks}/${host.name}`;
  await host.execute(`[ "$(cat ${path})" = ${host.id} ] && rm -f ${path}`);
}

const fenced = (e) => e?.code === 'INVENTORY' && /lease expired/.test(e.message);

say({ ev: 'ready' });
if (mode === 'stall') {
  // Hold a machine (marked and unmarked: done touching it), then wait to be stopped and continued.
  const host = await broker.checkout({ provider: 'static', waitForSsh: false });
  await mark(host);
  await unmark(host);
  say({ ev: 'holding', id: host.id, machine: host.name });
  await new Promise((r) => process.stdin.once('data', r));
  // The late write of a worker that stalled past its lease: it tries to reserve a machine again.
  const late = await broker.checkout({ provider: 'static', waitForSsh: false }).then(
    (h) => ({ ok: true, machine: h.name }),
    (e) => ({ ok: false, code: e?.code, fenced: fenced(e), message: e?.message }),
  );
  say({ ev: 'late-write', ...late });
  process.exit(0);
}
let cycles = 0;
let lastReap = 0;
while (cycles < Number(cyclesText)) {
  let host;
  try {
    host = await broker.checkout({ provider: 'static', waitForSsh: false });
  } catch (e) {
    if (fenced(e)) {
      say({ ev: 'fenced', code: e.code });
      process.exit(3);
    }
    if (!(e?.code === 'PROVIDER' && /are taken/.test(e.message))) say({ ev: 'error', where: 'checkout', code: e?.code, message: e?.message });
    // All taken: now and then finish what dead or stalled workers left (as a runner's set-up does).
    if (Date.now() - lastReap > 500) {
      lastReap = Date.now();
      const r = await broker.reap('static').catch((err) => say({ ev: 'error', where: 'reap', code: err?.code, message: err?.message }));
      for (const rec of r?.released ?? []) say({ ev: 'reaped', id: rec.id, machine: rec.name, worker: rec.worker });
    }
    await sleep(10 + Math.random() * 40);
    continue;
  }
  const t0 = Date.now();
  try {
    const other = await mark(host);
    if (other) say({ ev: 'double', machine: host.name, id: host.id, other });
    else await unmark(host);
    // Nobody removed the record while its worker lived and held the machine.
    if (!(await broker.find(host.id))) say({ ev: 'lost', id: host.id, machine: host.name });
    say({ ev: 'cycle', id: host.id, machine: host.name, t0, t1: Date.now() });
    cycles++;
  } catch (e) {
    say({ ev: 'error', where: 'use', code: e?.code, message: e?.message });
  }
  try {
    await host.checkin();
  } catch (e) {
    if (fenced(e)) {
      say({ ev: 'fenced', code: e.code });
      process.exit(3);
    }
    say({ ev: 'error', where: 'checkin', code: e?.code, message: e?.message });
  }
}
say({ ev: 'done', cycles });
await broker.close();
