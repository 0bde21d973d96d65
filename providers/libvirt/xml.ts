/**
 * Domain and volume XML for the libvirt provider, and the hostbroker `<metadata>` element that
 * tags a domain with its record (id, owner, broker, lease, volumes).
 * @module
 */
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
}

/** Escapes text for XML content and attribute values. */
export function xmlEscape(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

function xmlUnescape(value: string): string {
  return value
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

/** The `<hb:host>` element (inside `<metadata>`). */
export function metadataXml(meta: DomainMetadata): string {
  const field = (tag: string, value: string | undefined) => (value === undefined ? '' : `<hb:${tag}>${xmlEscape(value)}</hb:${tag}>`);
  const volumes = meta.volumes.map((v) => `<hb:volume pool="${xmlEscape(v.pool)}" role="${v.role}">${xmlEscape(v.name)}</hb:volume>`).join('');
  return `<hb:host xmlns:hb="${METADATA_NS}">${field('id', meta.id)}${field('owner', meta.owner)}${field('broker', meta.broker)}${field('name', meta.name)}${field('lease', meta.lease)}${field('created', meta.created)}${volumes}</hb:host>`;
}

/** Reads hostbroker's metadata from a domain's XML; undefined when the domain has none. */
export function parseMetadata(domainXml: string): DomainMetadata | undefined {
  const block = /<(\w+):host\s+xmlns:\1="urn:hostbroker:host:1"\s*>([\s\S]*?)<\/\1:host>/.exec(domainXml);
  if (!block) return undefined;
  const [, prefix, body] = block as unknown as [string, string, string];
  const get = (tag: string) => {
    const m = new RegExp(`<${prefix}:${tag}>([^<]*)</${prefix}:${tag}>`).exec(body);
    return m ? xmlUnescape(m[1]!) : undefined;
  };
  const volumes: OwnedVolume[] = [];
  for (const m of body.matchAll(new RegExp(`<${prefix}:volume pool="([^"]*)" role="(disk|seed)">([^<]*)</${prefix}:volume>`, 'g'))) {
    volumes.push({ pool: xmlUnescape(m[1]!), role: m[2] as OwnedVolume['role'], name: xmlUnescape(m[3]!) });
  }
  const id = get('id');
  if (!id) return undefined;
  const meta: DomainMetadata = { id, owner: get('owner') ?? '', broker: get('broker') ?? '', name: get('name') ?? '', volumes };
  const lease = get('lease');
  if (lease) meta.lease = lease;
  const created = get('created');
  if (created) meta.created = created;
  return meta;
}

/** Returns `domainXml` with the metadata lease set to `lease` (added when missing). */
export function withLease(domainXml: string, lease: string): string {
  const meta = parseMetadata(domainXml);
  if (!meta) throw new Error(`the domain has no hostbroker metadata (${TAGS.id})`);
  return domainXml.replace(/<(\w+):host\s+xmlns:\1="urn:hostbroker:host:1"\s*>[\s\S]*?<\/\1:host>/, metadataXml({ ...meta, lease }));
}

/** What a domain is made of. */
export interface DomainSpec {
  type: 'kvm' | 'qemu' | 'test';
  name: string;
  memoryMiB: number;
  vcpus: number;
  network: string;
  mac: string;
  disk: OwnedVolume;
  diskFormat: 'qcow2';
  seed: OwnedVolume;
  metadata: DomainMetadata;
}

/** The domain XML: overlay disk, seed CD-ROM, one NIC, guest agent channel, serial console. */
export function domainXml(spec: DomainSpec): string {
  const e = xmlEscape;
  return [
    `<domain type='${spec.type}'>`,
    `  <name>${e(spec.name)}</name>`,
    `  <metadata>${metadataXml(spec.metadata)}</metadata>`,
    `  <memory unit='MiB'>${spec.memoryMiB}</memory>`,
    `  <vcpu>${spec.vcpus}</vcpu>`,
    `  <os><type>hvm</type><boot dev='hd'/></os>`,
    `  <features><acpi/><apic/></features>`,
    spec.type === 'kvm' ? `  <cpu mode='host-passthrough'/>` : '',
    `  <devices>`,
    `    <disk type='volume' device='disk'><driver name='qemu' type='${spec.diskFormat}'/><source pool='${e(spec.disk.pool)}' volume='${e(spec.disk.name)}'/><target dev='vda' bus='virtio'/></disk>`,
    `    <disk type='volume' device='cdrom'><driver name='qemu' type='raw'/><source pool='${e(spec.seed.pool)}' volume='${e(spec.seed.name)}'/><target dev='sda' bus='sata'/><readonly/></disk>`,
    `    <interface type='network'><source network='${e(spec.network)}'/><mac address='${spec.mac}'/><model type='virtio'/></interface>`,
    `    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>`,
    `    <serial type='pty'/><console type='pty'/>`,
    `  </devices>`,
    `</domain>`,
  ]
    .filter(Boolean)
    .join('\n');
}

/** Volume XML of a copy-on-write overlay on `backingPath`. */
export function overlayVolumeXml(name: string, capacityBytes: number, backingPath: string, backingFormat: 'qcow2' | 'raw'): string {
  return `<volume><name>${xmlEscape(name)}</name><capacity unit='bytes'>${capacityBytes}</capacity><target><format type='qcow2'/></target><backingStore><path>${xmlEscape(backingPath)}</path><format type='${backingFormat}'/></backingStore></volume>`;
}
