/**
 * Beaker job XML: generated from checkout arguments (one recipe: install, your tasks, then
 * `/distribution/reservesys` with RESERVETIME), or taken from the user and tagged.
 * The tag lives in the job whiteboard: `[hostbroker id=<record id> broker=<broker id>]`.
 * @module
 */
import { UserInputError } from '../../lib/errors.js';
import { toMs } from '../../lib/settings.js';
import type { BeakerArgs } from './definition.js';
import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser';
import { cdata, escapeXml } from './xml.js';

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

type XmlNode = Record<string, unknown> & { ':@'?: Record<string, string> };

const XML_OPTIONS = {
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '@_',
  commentPropName: '#comment',
  cdataPropName: '#cdata',
  trimValues: false,
  parseTagValue: false,
  parseAttributeValue: false,
} as const;

/** The element name of a preserve-order node (not text, comment or CDATA). */
function nameOf(node: XmlNode): string | undefined {
  return Object.keys(node).find((k) => k !== ':@' && !k.startsWith('#') && !k.startsWith('?'));
}

const childrenOf = (node: XmlNode, name: string) => node[name] as XmlNode[];

/** Every element in a tree, depth first. */
function* elements(nodes: XmlNode[]): Generator<{ name: string; node: XmlNode }> {
  for (const node of nodes) {
    const name = nameOf(node);
    if (!name) continue;
    yield { name, node };
    yield* elements(childrenOf(node, name));
  }
}

/** A user's job XML, parsed; malformed XML is a UserInputError naming the line. */
function parseJobXml(xml: string): XmlNode[] {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    throw new UserInputError(
      `beaker: the job XML is not well-formed at line ${valid.err.line}, column ${valid.err.col}: ${valid.err.msg} Fix the job XML (jobXml / jobXmlFile).`,
    );
  }
  return new XMLParser(XML_OPTIONS).parse(xml) as XmlNode[];
}

/** Adds the tag to the job whiteboard of a user's job XML (creating the whiteboard if needed). */
export function tagJobXml(xml: string, record: { id: string; brokerId: string }): string {
  const tree = parseJobXml(xml);
  const job = tree.find((n) => nameOf(n) === 'job');
  const jobChildren = job ? childrenOf(job, 'job') : [];
  if (!job || !jobChildren.some((n) => nameOf(n) === 'recipeSet'))
    throw new UserInputError('beaker: the job XML has no <job> element with recipe sets; check the file.');
  const tag = whiteboardTag(record);
  // Only the job's own whiteboard (a direct child), not a recipe's.
  const board = jobChildren.find((n) => nameOf(n) === 'whiteboard');
  if (board) {
    const text = childrenOf(board, 'whiteboard')
      .map((n) => String(n['#text'] ?? ''))
      .join('')
      .trim();
    board.whiteboard = [{ '#text': text ? `${text} ${tag}` : tag }];
  } else jobChildren.unshift({ whiteboard: [{ '#text': tag }] });
  return new XMLBuilder({ ...XML_OPTIONS, suppressEmptyNode: true }).build(tree) as string;
}

/** The reservesys tasks and elements of a job XML. */
function reservations(xml: string): XmlNode[] {
  return [...elements(parseJobXml(xml))]
    .filter(({ name, node }) => name === 'reservesys' || (name === 'task' && node[':@']?.['@_name'] === '/distribution/reservesys'))
    .map(({ node }) => node);
}

/** Beaker's reservation when the job names no duration: 24 h (the reservesys task and element alike). */
const DEFAULT_RESERVE_SECONDS = 86_400;

/** Seconds the job XML reserves for: RESERVETIME, the `<reservesys duration>`, else Beaker's default; undefined without a reservation. */
export function reserveTimeOf(xml: string): number | undefined {
  const found = reservations(xml);
  for (const node of found) {
    const duration = node[':@']?.['@_duration'];
    if (nameOf(node) === 'reservesys' && duration !== undefined && /^\d+$/.test(duration)) return Number(duration);
    for (const { name, node: param } of elements(childrenOf(node, nameOf(node)!))) {
      const value = param[':@']?.['@_value'];
      if (name === 'param' && param[':@']?.['@_name'] === 'RESERVETIME' && value !== undefined && /^\d+$/.test(value)) return Number(value);
    }
  }
  return found.length ? DEFAULT_RESERVE_SECONDS : undefined;
}

/** Whether a job XML asks for a reservation at all. */
export function reserves(xml: string): boolean {
  return reservations(xml).length > 0;
}
