/**
 * Glance v2: images by id or name.
 * @module
 */
import { ProviderError } from '../../lib/errors.js';
import { isNotFound } from './compute.js';
import type { ServiceClient } from './keystone.js';
import { Image, ImageList } from './schemas.js';

const PROVIDER = 'openstack';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Glance. */
export class Images {
  constructor(private readonly service: ServiceClient) {}

  /** Catalog URLs may or may not end in the version. */
  private async prefix(): Promise<string> {
    return /\/v2(\.\d+)?$/.test(await this.service.baseUrl()) ? '' : '/v2';
  }

  /** An image by id, or by name when exactly one active image has it. */
  async find(nameOrId: string, signal?: AbortSignal): Promise<Image> {
    const prefix = await this.prefix();
    if (UUID.test(nameOrId)) {
      try {
        return await this.service.json('GET', `${prefix}/images/${nameOrId}`, Image, { signal });
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
    }
    const { images } = await this.service.json('GET', `${prefix}/images?name=${encodeURIComponent(nameOrId)}`, ImageList, { signal });
    const usable = images.filter((i) => !i.status || i.status === 'active');
    if (usable.length === 1) return usable[0]!;
    if (usable.length > 1) {
      throw new ProviderError(
        PROVIDER,
        `Glance has ${usable.length} active images named \`${nameOrId}\` (${usable.map((i) => i.id).join(', ')}); pass \`image\` by id.`,
      );
    }
    throw new ProviderError(
      PROVIDER,
      `Glance has no active image \`${nameOrId}\`${images.length ? ` (found one in state ${images[0]!.status})` : ''}; check the name with \`openstack image list\`, or pass its id.`,
      { status: 404 },
    );
  }

  /** Names of active images (for help). */
  async list(signal?: AbortSignal): Promise<Image[]> {
    const prefix = await this.prefix();
    return (await this.service.json('GET', `${prefix}/images?status=active&limit=200`, ImageList, { signal })).images;
  }
}
