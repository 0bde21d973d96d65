/**
 * Beaker job XML: generated from checkout arguments (one recipe: install, your tasks, then
 * `/distribution/reservesys` with RESERVETIME), or taken from the user and tagged.
 * The tag lives in the job whiteboard: `[hostbroker id=<record id> broker=<broker id>]`.
 * @module
 */
import { UserInputError } from '../../lib/errors.js';
import { toMs } from '../../lib/settings.js';
import type { BeakerArgs } from './definition.js';
import { cdata, escapeXml, unescapeXml } from './xml.js';

/** The whiteboard tag of a record. */
export function whiteboardTag(record: { id: string; brokerId: string }): string {
  return `[hostbroker id=${record.id} broker=${record.brokerId}]`;
}

/** The record id and broker id in a whiteboard, if it carries our tag. */
export function parseWhiteboard(whiteboard: string | null | undefined): { id: string; brokerId: string } | undefined {
  const m = /\[hostbroker id=([^\s\]]+) broker=([^\s\]]+)\]/.exec(whiteboard ?? '');
  return m ? { id: m[1]!, brokerId: m[2]! } : undefined;
}

const attr = (name: string, value: string | undefined) => (value === undefined ? '' : ` ${name}="${escapeXml(value)}"`);
const op = (element: string, value: string | number) => `<${element} op="=" value="${escapeXml(String(value))}"/>`;

/** Seconds of the reservation. */
export function reserveSeconds(args: Pick<BeakerArgs, 'reserveDuration'>): number {
  return Math.max(1, Math.round(toMs(args.reserveDuration) / 1000));
}

/** A job XML for the arguments, tagged for `record`. */
export function buildJobXml(args: BeakerArgs, record: { id: string; brokerId: string }, installTask: string): string {
  if (!args.distro && !args.family) throw new UserInputError('beaker: give `distro` (or `family`) to generate a job, or pass `jobXml`/`jobXmlFile`.');
  const distro = [
    args.distro ? op('distro_name', args.distro) : op('distro_family', args.family!),
    args.tag && !args.distro ? `<distro_tag op="=" value="${escapeXml(args.tag)}"/>` : '',
    args.variant ? op('distro_variant', args.variant) : '',
    op('distro_arch', args.arch),
  ].join('');
  let hostRequires: string;
  if (args.force) hostRequires = `<hostRequires force="${escapeXml(args.force)}"/>`;
  else if (typeof args.hostRequires === 'string') hostRequires = `<hostRequires>${args.hostRequires}</hostRequires>`;
  else if (args.hostRequires)
    hostRequires = `<hostRequires><and>${Object.entries(args.hostRequires)
      .map(([k, v]) => op(k, v))
      .join('')}</and></hostRequires>`;
  else hostRequires = `<hostRequires><and>${op('arch', args.arch)}</and></hostRequires>`;
  const appends = args.ksAppend === undefined ? [] : Array.isArray(args.ksAppend) ? args.ksAppend : [args.ksAppend];
  const tasks = args.tasks.map((t) => (typeof t === 'string' ? { name: t, params: undefined } : t));
  const taskXml = (name: string, params?: Record<string, string | number>) =>
    `<task name="${escapeXml(name)}" role="STANDALONE">${
      params && Object.keys(params).length
        ? `<params>${Object.entries(params)
            .map(([k, v]) => `<param name="${escapeXml(k)}" value="${escapeXml(String(v))}"/>`)
            .join('')}</params>`
        : ''
    }</task>`;
  const whiteboard = [args.whiteboard, whiteboardTag(record)].filter(Boolean).join(' ');
  return [
    `<job${attr('retention_tag', args.retentionTag)}${attr('product', args.product)}>`,
    `<whiteboard>${escapeXml(whiteboard)}</whiteboard>`,
    '<recipeSet priority="Normal">',
    `<recipe${attr('whiteboard', args.name)}${attr('kernel_options', args.kernelOptions)}${attr('kernel_options_post', args.kernelOptionsPost)}${attr('ks_meta', args.ksMeta)}>`,
    '<autopick random="false"/>',
    `<distroRequires><and>${distro}</and></distroRequires>`,
    hostRequires,
    appends.length ? `<ks_appends>${appends.map((a) => `<ks_append>${cdata(a)}</ks_append>`).join('')}</ks_appends>` : '',
    installTask ? taskXml(installTask) : '',
    ...tasks.map((t) => taskXml(t.name, t.params)),
    taskXml('/distribution/reservesys', { RESERVETIME: reserveSeconds(args) }),
    '</recipe>',
    '</recipeSet>',
    '</job>',
  ].join('\n');
}

/** Adds the tag to the job whiteboard of a user's job XML (creating the whiteboard if needed). */
export function tagJobXml(xml: string, record: { id: string; brokerId: string }): string {
  const tag = escapeXml(whiteboardTag(record));
  const job = /<job\b[^>]*?(\/?)>/.exec(xml);
  if (!job || job[1]) throw new UserInputError('beaker: the job XML has no <job> element with recipe sets; check the file.');
  const start = job.index + job[0].length;
  // Only the job's own whiteboard: the part before the first recipe set.
  const firstSet = xml.indexOf('<recipeSet', start);
  const head = xml.slice(start, firstSet < 0 ? undefined : firstSet);
  const full = /<whiteboard\s*>([\s\S]*?)<\/whiteboard\s*>/.exec(head);
  const empty = /<whiteboard\s*\/>/.exec(head);
  let newHead: string;
  if (full) {
    const text = full[1]!.trim();
    newHead = head.replace(full[0], `<whiteboard>${text ? `${text} ` : ''}${tag}</whiteboard>`);
  } else if (empty) newHead = head.replace(empty[0], `<whiteboard>${tag}</whiteboard>`);
  else newHead = `\n<whiteboard>${tag}</whiteboard>${head}`;
  return xml.slice(0, start) + newHead + xml.slice(start + head.length);
}

/** RESERVETIME (seconds) of the reservesys task in a job XML, if it has one. */
export function reserveTimeOf(xml: string): number | undefined {
  const m = /<param\s+name="RESERVETIME"\s+value="(\d+)"/.exec(xml);
  if (m) return Number(m[1]);
  const r = /<reservesys\b[^>]*duration="(\d+)"/.exec(xml);
  return r ? Number(r[1]) : undefined;
}

/** Whether a job XML asks for a reservation at all. */
export function reserves(xml: string): boolean {
  return /\/distribution\/reservesys|<reservesys\b/.test(unescapeXml(xml));
}
