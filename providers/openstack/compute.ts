/**
 * The Nova calls hostbroker makes: servers (create, show, delete, list, metadata), flavors,
 * absolute limits and key pairs.
 * @module
 */
import { ProviderError } from '../../lib/errors.js';
import { registerSecret } from '../../lib/secrets.js';
import type { ServiceClient } from './keystone.js';
import { type AbsoluteLimits, CreatedServer, type Flavor, FlavorList, KeypairEnvelope, Limits, type Server, ServerEnvelope, ServerList } from './schemas.js';

const PROVIDER = 'openstack';

/** The body of `POST /servers` (the `server` object). */
export interface ServerCreate {
  name: string;
  imageRef: string;
  flavorRef: string;
  networks?: { uuid: string }[];
  metadata: Record<string, string>;
  key_name?: string;
  user_data?: string;
  config_drive?: boolean;
  security_groups?: { name: string }[];
  availability_zone?: string;
}

/** True when a ProviderError says the resource is not there. */
export function isNotFound(error: unknown): boolean {
  return (error as ProviderError | undefined)?.status === 404;
}

/** Nova. */
export class Compute {
  constructor(private readonly service: ServiceClient) {}

  /** Creates a server; returns its id. The one-time admin password is scrubbed, never kept. */
  async createServer(server: ServerCreate, signal?: AbortSignal): Promise<string> {
    const created = await this.service.json('POST', '/servers', CreatedServer, { json: { server }, signal });
    registerSecret(created.server.adminPass);
    return created.server.id;
  }

  /** A server, or undefined when Nova says it does not exist. */
  async getServer(id: string, signal?: AbortSignal): Promise<Server | undefined> {
    try {
      return (await this.service.json('GET', `/servers/${encodeURIComponent(id)}`, ServerEnvelope, { signal })).server;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /** Deletes a server; false when it was already gone. */
  async deleteServer(id: string, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.service.request('DELETE', `/servers/${encodeURIComponent(id)}`, { signal });
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  /**
   * Every server of the project, with details, following Nova's pagination. Nova has no filter on
   * metadata for non-admin users, so callers filter the result by metadata.
   */
  async listServers(signal?: AbortSignal): Promise<Server[]> {
    const servers: Server[] = [];
    let path: string | undefined = '/servers/detail?limit=200';
    while (path) {
      const page: { servers: Server[]; servers_links?: { rel: string; href: string }[] } = await this.service.json('GET', path, ServerList, { signal });
      servers.push(...page.servers);
      const next = page.servers_links?.find((l) => l.rel === 'next')?.href;
      path = next && page.servers.length > 0 ? await this.relative(next) : undefined;
    }
    return servers;
  }

  /** Merges metadata into a server's metadata. */
  async setMetadata(id: string, metadata: Record<string, string>, signal?: AbortSignal): Promise<void> {
    await this.service.request('POST', `/servers/${encodeURIComponent(id)}/metadata`, { json: { metadata }, signal, idempotent: true });
  }

  /** A flavor by id or name. */
  async findFlavor(nameOrId: string, signal?: AbortSignal): Promise<Flavor> {
    const { flavors } = await this.service.json('GET', '/flavors/detail', FlavorList, { signal });
    const found = flavors.find((f) => f.id === nameOrId) ?? flavors.find((f) => f.name === nameOrId);
    if (!found) {
      throw new ProviderError(
        PROVIDER,
        `Nova has no flavor \`${nameOrId}\`; available: ${flavors.map((f) => f.name).join(', ') || 'none'}. Pass \`flavor\` by one of these names or ids.`,
        {
          status: 404,
        },
      );
    }
    return found;
  }

  /** All flavors (for help). */
  async listFlavors(signal?: AbortSignal): Promise<Flavor[]> {
    return (await this.service.json('GET', '/flavors/detail', FlavorList, { signal })).flavors;
  }

  /** The project's absolute limits and usage. */
  async limits(signal?: AbortSignal): Promise<AbsoluteLimits> {
    return (await this.service.json('GET', '/limits', Limits, { signal })).limits.absolute;
  }

  /** Whether a key pair exists. */
  async hasKeypair(name: string, signal?: AbortSignal): Promise<boolean> {
    try {
      await this.service.json('GET', `/os-keypairs/${encodeURIComponent(name)}`, KeypairEnvelope, { signal });
      return true;
    } catch (error) {
      if (isNotFound(error)) return false;
      throw error;
    }
  }

  /** Imports a public key as a key pair. */
  async importKeypair(name: string, publicKey: string, signal?: AbortSignal): Promise<void> {
    await this.service.json('POST', '/os-keypairs', KeypairEnvelope, { json: { keypair: { name, public_key: publicKey } }, signal });
  }

  /** Nova's next links are absolute; keep only what follows the endpoint. */
  private async relative(href: string): Promise<string> {
    const base = await this.service.baseUrl();
    const url = new URL(href);
    const basePath = new URL(base).pathname.replace(/\/+$/, '');
    const path = url.pathname.startsWith(basePath) ? url.pathname.slice(basePath.length) : url.pathname.replace(/^\/v2(\.1)?(\/[0-9a-f]{32})?/, '');
    return `${path}${url.search}`;
  }
}
