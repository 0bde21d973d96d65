/**
 * Domain and volume XML for the libvirt provider, and the hostbroker `<metadata>` element that
 * tags a domain with its record (id, owner, broker, lease, volumes).
 * @module
 */
import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser';
import { ProviderError, UserInputError } from '../../lib/errors.js';
import { TAGS } from '../../lib/provider.js';

/** XML namespace of hostbroker's domain metadata. */
export const METADATA_NS = 'urn:hostbroker:host:1';

/** A volume a domain owns (deleted with it). */
export interface OwnedVolume {
  pool: string;
  name: string;
  /** `disk` (the overlay) or `seed` (the cloud-init ISO). */
  role: 'disk' | 'seed';
}

/** What hostbroker records in a domain's `<metadata>`. */
export interface DomainMetadata {
  id: string;
  owner: string;
  broker: string;
  name: string;
  lease?: string;
  created?: string;
  volumes: OwnedVolume[];
  /** User-mode network forwards (so sync finds the SSH address). */
  forwards?: Forward[];
}

/** A host port QEMU's user-mode network forwards to a guest port. */
export interface Forward {
  /** Guest TCP port. */
  guest: number;
  /** Address and port on the hypervisor host. */
  host: string;
  port: number;
}

/** Escapes text for XML content and attribute values. */
export function xmlEscape(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/** fast-xml-parser's ordered form: every element is `{ tag: children, ':@': attributes }`. */
type XmlNode = { [tag: string]: XmlNode[] | string | Record<string, string> | undefined; ':@'?: Record<string, string> };
const ORDERED = {
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  commentPropName: '#comment',
  cdataPropName: '#cdata',
  // The DOCTYPE-free XML libvirt speaks: no entity expansion beyond the five XML defines.
  processEntities: true,
  htmlEntities: false,
} as const;

/**
 * Parses XML (the ordered tree, nothing lost). Malformed XML is a UserInputError naming the line,
 * when a user wrote it; a ProviderError when libvirt gave it.
 */
export function parseXml(xml: string, what: string, from: 'user' | 'libvirt' = 'user'): XmlNode[] {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    const { line, col, msg } = valid.err;
    const message = `[libvirt] ${what} is not well-formed XML: line ${line}, column ${col}: ${msg}`;
    if (from === 'user') throw new UserInputError(`${message}; fix the XML (it must be one or more complete elements).`);
    throw new ProviderError('libvirt', message);
  }
  return new XMLParser(ORDERED).parse(xml) as XmlNode[];
}

function buildXml(nodes: XmlNode[]): string {
  return new XMLBuilder({ ...ORDERED, suppressEmptyNode: true }).build(nodes) as string;
}

const tagOf = (node: XmlNode) => Object.keys(node).find((k) => k !== ':@') ?? '';
const childrenOf = (node: XmlNode | undefined) => (node ? ((node[tagOf(node)] as XmlNode[] | undefined) ?? []) : []);
const textOf = (node: XmlNode) =>
  childrenOf(node)
    .map((c) => (typeof c['#text'] === 'string' ? c['#text'] : ''))
    .join('');
const child = (nodes: XmlNode[], tag: string) => nodes.find((n) => tagOf(n) === tag);

/** The hostbroker `<…:host>` element in a parsed domain, with the prefix it uses. */
function findHostElement(tree: XmlNode[]): { parent: XmlNode[]; index: number; prefix: string } | undefined {
  const metadata = childrenOf(child(childrenOf(child(tree, 'domain')), 'metadata'));
  for (const [index, node] of metadata.entries()) {
    const tag = tagOf(node);
    const prefix = tag.includes(':') ? tag.slice(0, tag.indexOf(':')) : '';
    const ns = node[':@']?.[prefix ? `xmlns:${prefix}` : 'xmlns'];
    if (tag === (prefix ? `${prefix}:host` : 'host') && ns === METADATA_NS) return { parent: metadata, index, prefix };
  }
  return undefined;
}

/** The `<hb:host>` element (inside `<metadata>`). */
export function metadataXml(meta: DomainMetadata): string {
  const field = (tag: string, value: string | undefined) => (value === undefined ? '' : `<hb:${tag}>${xmlEscape(value)}</hb:${tag}>`);
  const volumes = meta.volumes.map((v) => `<hb:volume pool="${xmlEscape(v.pool)}" role="${v.role}">${xmlEscape(v.name)}</hb:volume>`).join('');
  const forwards = (meta.forwards ?? []).map((f) => `<hb:forward guest="${f.guest}" host="${xmlEscape(f.host)}" port="${f.port}"/>`).join('');
  return `<hb:host xmlns:hb="${METADATA_NS}">${field('id', meta.id)}${field('owner', meta.owner)}${field('broker', meta.broker)}${field('name', meta.name)}${field('lease', meta.lease)}${field('created', meta.created)}${volumes}${forwards}</hb:host>`;
}

/** Reads hostbroker's metadata from a domain's XML (as libvirt gives it); undefined when the domain has none. */
export function parseMetadata(domainXml: string): DomainMetadata | undefined {
  const found = findHostElement(parseXml(domainXml, 'the domain XML', 'libvirt'));
  if (!found) return undefined;
  const p = found.prefix ? `${found.prefix}:` : '';
  const fields = childrenOf(found.parent[found.index]);
  const get = (tag: string) => {
    const node = child(fields, p + tag);
    return node ? textOf(node) : undefined;
  };
  const id = get('id');
  if (!id) return undefined;
  const volumes: OwnedVolume[] = [];
  const forwards: Forward[] = [];
  for (const node of fields) {
    const attrs = node[':@'] ?? {};
    if (tagOf(node) === `${p}volume` && (attrs.role === 'disk' || attrs.role === 'seed'))
      volumes.push({ pool: attrs.pool ?? '', role: attrs.role, name: textOf(node) });
    if (tagOf(node) === `${p}forward` && Number(attrs.guest) > 0 && Number(attrs.port) > 0)
      forwards.push({ guest: Number(attrs.guest), host: attrs.host || '127.0.0.1', port: Number(attrs.port) });
  }
  const meta: DomainMetadata = { id, owner: get('owner') ?? '', broker: get('broker') ?? '', name: get('name') ?? '', volumes };
  const lease = get('lease');
  if (lease) meta.lease = lease;
  const created = get('created');
  if (created) meta.created = created;
  if (forwards.length) meta.forwards = forwards;
  return meta;
}

/** Returns `domainXml` with the metadata lease set to `lease` (added when missing); the rest is kept as it is. */
export function withLease(domainXml: string, lease: string): string {
  const tree = parseXml(domainXml, 'the domain XML', 'libvirt');
  const found = findHostElement(tree);
  const meta = parseMetadata(domainXml);
  if (!found || !meta) throw new Error(`the domain has no hostbroker metadata (${TAGS.id})`);
  found.parent[found.index] = parseXml(metadataXml({ ...meta, lease }), 'metadata')[0]!;
  return buildXml(tree);
}

/** Checks a fragment of device XML a user gives (UserInputError naming the line when malformed). */
export function checkDevicesXml(fragment: string): void {
  const devices = childrenOf(child(parseXml(`<devices>${fragment}</devices>`, 'the `devices` XML'), 'devices'));
  const stray = devices.find((n) => tagOf(n) === '#text' && String(n['#text']).trim() !== '');
  if (stray)
    throw new UserInputError(
      `[libvirt] the \`devices\` XML has text outside any element ("${String(stray['#text']).trim().slice(0, 40)}"); give device elements such as <disk>…</disk>.`,
    );
}

/** Where a domain's NIC goes: a libvirt network, or QEMU's user-mode network with forwards. */
export type Nic = { mode: 'network'; network: string } | { mode: 'user'; forwards: Forward[]; restrict: boolean };

/** What a domain is made of. */
export interface DomainSpec {
  type: 'kvm' | 'qemu' | 'test';
  name: string;
  memoryMiB: number;
  vcpus: number;
  nic: Nic;
  mac: string;
  disk: OwnedVolume;
  diskFormat: 'qcow2';
  seed: OwnedVolume;
  /** Bus of the seed CD-ROM: `sata`, or `scsi` (virtio-scsi) for kernels without AHCI such as Debian's cloud kernel. */
  seedBus: 'sata' | 'scsi';
  /** Direct kernel boot (paths on the hypervisor). */
  boot?: { kernel: string; initrd?: string; cmdline?: string };
  /** Extra device XML (checked with {@link checkDevicesXml}). */
  devices?: string;
  metadata: DomainMetadata;
}

/** PCI slot of the user-mode NIC, out of the way of the slots libvirt hands out from 2 upwards. */
const USER_NIC_SLOT = '0x1f';
const QEMU_NS = 'http://libvirt.org/schemas/domain/qemu/1.0';

/** QEMU arguments of a user-mode NIC: forwards bound on the host address, a virtio-net device. */
export function userNetArgs(nic: Extract<Nic, { mode: 'user' }>, mac: string): string[] {
  const forwards = nic.forwards.map((f) => `,hostfwd=tcp:${f.host}:${f.port}-:${f.guest}`).join('');
  return [
    '-netdev',
    `user,id=hbnet0${nic.restrict ? ',restrict=on' : ''}${forwards}`,
    '-device',
    `virtio-net-pci,netdev=hbnet0,mac=${mac},bus=pci.0,addr=${USER_NIC_SLOT}`,
  ];
}

/** The domain XML: overlay disk, seed CD-ROM, one NIC, RNG, guest agent channel, serial console. */
export function domainXml(spec: DomainSpec): string {
  const e = xmlEscape;
  const user = spec.nic.mode === 'user' ? spec.nic : undefined;
  const boot = spec.boot
    ? [
        `<kernel>${e(spec.boot.kernel)}</kernel>`,
        spec.boot.initrd ? `<initrd>${e(spec.boot.initrd)}</initrd>` : '',
        spec.boot.cmdline ? `<cmdline>${e(spec.boot.cmdline)}</cmdline>` : '',
      ].join('')
    : '';
  return [
    user ? `<domain type='${spec.type}' xmlns:qemu='${QEMU_NS}'>` : `<domain type='${spec.type}'>`,
    `  <name>${e(spec.name)}</name>`,
    `  <metadata>${metadataXml(spec.metadata)}</metadata>`,
    `  <memory unit='MiB'>${spec.memoryMiB}</memory>`,
    `  <vcpu>${spec.vcpus}</vcpu>`,
    `  <os><type>hvm</type>${boot}<boot dev='hd'/></os>`,
    // Without ACPI libvirt passes -no-acpi, and a guest's power-off leaves the domain running.
    `  <features><acpi/><apic/></features>`,
    spec.type === 'kvm' ? `  <cpu mode='host-passthrough'/>` : '',
    `  <devices>`,
    `    <disk type='volume' device='disk'><driver name='qemu' type='${spec.diskFormat}'/><source pool='${e(spec.disk.pool)}' volume='${e(spec.disk.name)}'/><target dev='vda' bus='virtio'/></disk>`,
    spec.seedBus === 'scsi' ? `    <controller type='scsi' model='virtio-scsi'/>` : '',
    `    <disk type='volume' device='cdrom'><driver name='qemu' type='raw'/><source pool='${e(spec.seed.pool)}' volume='${e(spec.seed.name)}'/><target dev='sda' bus='${spec.seedBus}'/><readonly/></disk>`,
    spec.nic.mode === 'network'
      ? `    <interface type='network'><source network='${e(spec.nic.network)}'/><mac address='${spec.mac}'/><model type='virtio'/></interface>`
      : '',
    // Entropy for the guest's first boot (host keys, TLS) without waiting on its own sources.
    `    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>`,
    `    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>`,
    `    <serial type='pty'/><console type='pty'/>`,
    spec.devices ? `    ${spec.devices}` : '',
    `  </devices>`,
    user
      ? `  <qemu:commandline>${userNetArgs(user, spec.mac)
          .map((a) => `<qemu:arg value='${e(a)}'/>`)
          .join('')}</qemu:commandline>`
      : '',
    `</domain>`,
  ]
    .filter(Boolean)
    .join('\n');
}

/** Volume XML of a copy-on-write overlay on `backingPath`. */
export function overlayVolumeXml(name: string, capacityBytes: number, backingPath: string, backingFormat: 'qcow2' | 'raw'): string {
  return `<volume><name>${xmlEscape(name)}</name><capacity unit='bytes'>${capacityBytes}</capacity><target><format type='qcow2'/></target><backingStore><path>${xmlEscape(backingPath)}</path><format type='${backingFormat}'/></backingStore></volume>`;
}
