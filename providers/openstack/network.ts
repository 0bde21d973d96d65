/**
 * Neutron v2.0: networks by name or id, a server's ports, and floating IPs.
 * @module
 */
import { ProviderError } from '../../lib/errors.js';
import { isNotFound } from './compute.js';
import type { ServiceClient } from './keystone.js';
import { type FloatingIp, FloatingIpEnvelope, FloatingIpList, type Network, NetworkList, PortList } from './schemas.js';

const PROVIDER = 'openstack';

/** Neutron. */
export class Networks {
  constructor(private readonly service: ServiceClient) {}

  private async prefix(): Promise<string> {
    return /\/v2\.0$/.test(await this.service.baseUrl()) ? '' : '/v2.0';
  }

  private async list(query: string, signal?: AbortSignal): Promise<Network[]> {
    return (await this.service.json('GET', `${await this.prefix()}/networks${query}`, NetworkList, { signal })).networks;
  }

  /** A network by name (exactly one) or id. */
  async find(nameOrId: string, signal?: AbortSignal): Promise<Network> {
    const byName = await this.list(`?name=${encodeURIComponent(nameOrId)}`, signal);
    if (byName.length === 1) return byName[0]!;
    if (byName.length > 1) {
      throw new ProviderError(
        PROVIDER,
        `Neutron has ${byName.length} networks named \`${nameOrId}\` (${byName.map((n) => n.id).join(', ')}); pass \`network\` by id.`,
      );
    }
    const byId = await this.list(`?id=${encodeURIComponent(nameOrId)}`, signal);
    if (byId[0]) return byId[0];
    const all = await this.list('', signal);
    throw new ProviderError(PROVIDER, `Neutron has no network \`${nameOrId}\`; available: ${all.map((n) => n.name || n.id).join(', ') || 'none'}.`, {
      status: 404,
    });
  }

  /** The external network for floating IPs: the named one, else the first external network. */
  async external(nameOrId: string | undefined, signal?: AbortSignal): Promise<Network> {
    if (nameOrId) return this.find(nameOrId, signal);
    const external = await this.list('?router:external=true', signal);
    if (!external[0]) throw new ProviderError(PROVIDER, 'Neutron has no external network for floating IPs; set `floatingNetwork`, or turn `floatingIp` off.');
    return external[0];
  }

  /** All networks (for help). */
  async all(signal?: AbortSignal): Promise<Network[]> {
    return this.list('', signal);
  }

  /** Ports of a server (its device id). */
  async portsOf(serverId: string, signal?: AbortSignal) {
    return (await this.service.json('GET', `${await this.prefix()}/ports?device_id=${encodeURIComponent(serverId)}`, PortList, { signal })).ports;
  }

  /** Allocates a floating IP on `networkId` and associates it with `portId`. */
  async createFloatingIp(networkId: string, portId: string, description: string, signal?: AbortSignal): Promise<FloatingIp> {
    const body = { floatingip: { floating_network_id: networkId, port_id: portId, description } };
    return (await this.service.json('POST', `${await this.prefix()}/floatingips`, FloatingIpEnvelope, { json: body, signal })).floatingip;
  }

  /** Floating IPs whose description is exactly `description`. */
  async floatingIpsDescribed(description: string, signal?: AbortSignal): Promise<FloatingIp[]> {
    const path = `${await this.prefix()}/floatingips?description=${encodeURIComponent(description)}`;
    return (await this.service.json('GET', path, FloatingIpList, { signal })).floatingips.filter((f) => f.description === description);
  }

  /** Releases a floating IP; false when it was already gone. */
  async deleteFloatingIp(id: string, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.service.request('DELETE', `${await this.prefix()}/floatingips/${encodeURIComponent(id)}`, { signal });
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }
}
