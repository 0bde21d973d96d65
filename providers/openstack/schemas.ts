/**
 * Zod schemas of the parts of Keystone v3, Nova, Glance and Neutron responses hostbroker reads.
 * Only what is used is required; everything else the services send is ignored.
 * @module
 */
import { lazySchema, z } from '../../lib/zod.js';

// ---- Keystone v3 ----

export const CatalogEndpoint = lazySchema(() =>
  z.object({
    interface: z.string(),
    url: z.string(),
    region: z.string().nullish(),
    region_id: z.string().nullish(),
  }),
);
export const CatalogEntry = lazySchema(() =>
  z.object({
    type: z.string(),
    name: z.string().optional(),
    endpoints: z.array(CatalogEndpoint),
  }),
);
export type CatalogEntry = z.output<typeof CatalogEntry>;

export const TokenResponse = lazySchema(() =>
  z.object({
    token: z.object({
      expires_at: z.string(),
      catalog: z.array(CatalogEntry).default([]),
      project: z.object({ id: z.string(), name: z.string().optional() }).optional(),
      user: z.object({ id: z.string(), name: z.string().optional() }).optional(),
    }),
  }),
);

// ---- Nova ----

export const Fault = lazySchema(() =>
  z.object({
    code: z.number().optional(),
    message: z.string().default(''),
    details: z.string().optional(),
    created: z.string().optional(),
  }),
);

export const ServerAddress = lazySchema(() =>
  z.object({
    addr: z.string(),
    version: z.number().optional(),
    'OS-EXT-IPS:type': z.string().optional(),
  }),
);

export const Server = lazySchema(() =>
  z.object({
    id: z.string(),
    name: z.string().default(''),
    status: z.string().default('UNKNOWN'),
    created: z.string().optional(),
    metadata: z.record(z.string(), z.string()).default({}),
    addresses: z.record(z.string(), z.array(ServerAddress)).default({}),
    accessIPv4: z.string().optional(),
    fault: Fault.optional(),
    key_name: z.string().nullish(),
  }),
);
export type Server = z.output<typeof Server>;

export const ServerEnvelope = lazySchema(() => z.object({ server: Server }));
/** 202 to a create: the id (and an `adminPass` we never keep). */
export const CreatedServer = lazySchema(() => z.object({ server: z.object({ id: z.string(), adminPass: z.string().optional() }) }));

export const Link = lazySchema(() => z.object({ rel: z.string(), href: z.string() }));
export const ServerList = lazySchema(() => z.object({ servers: z.array(Server), servers_links: z.array(Link).optional() }));

export const Flavor = lazySchema(() =>
  z.object({
    id: z.string(),
    name: z.string(),
    vcpus: z.number().default(0),
    ram: z.number().default(0),
    disk: z.number().optional(),
  }),
);
export type Flavor = z.output<typeof Flavor>;
export const FlavorEnvelope = lazySchema(() => z.object({ flavor: Flavor }));
export const FlavorList = lazySchema(() => z.object({ flavors: z.array(Flavor), flavors_links: z.array(Link).optional() }));

export const Limits = lazySchema(() =>
  z.object({
    limits: z.object({
      absolute: z.object({
        maxTotalInstances: z.number(),
        totalInstancesUsed: z.number().default(0),
        maxTotalCores: z.number(),
        totalCoresUsed: z.number().default(0),
        maxTotalRAMSize: z.number(),
        totalRAMUsed: z.number().default(0),
      }),
    }),
  }),
);
export type AbsoluteLimits = z.output<typeof Limits>['limits']['absolute'];

export const KeypairEnvelope = lazySchema(() => z.object({ keypair: z.object({ name: z.string() }) }));

// ---- Glance v2 ----

export const Image = lazySchema(() => z.object({ id: z.string(), name: z.string().nullish(), status: z.string().optional() }));
export type Image = z.output<typeof Image>;
export const ImageList = lazySchema(() => z.object({ images: z.array(Image), next: z.string().optional() }));

// ---- Neutron v2.0 ----

export const Network = lazySchema(() =>
  z.object({
    id: z.string(),
    name: z.string().default(''),
    'router:external': z.boolean().optional(),
    status: z.string().optional(),
  }),
);
export type Network = z.output<typeof Network>;
export const NetworkEnvelope = lazySchema(() => z.object({ network: Network }));
export const NetworkList = lazySchema(() => z.object({ networks: z.array(Network) }));

export const Port = lazySchema(() =>
  z.object({
    id: z.string(),
    network_id: z.string(),
    fixed_ips: z.array(z.object({ ip_address: z.string(), subnet_id: z.string().optional() })).default([]),
  }),
);
export const PortList = lazySchema(() => z.object({ ports: z.array(Port) }));

export const FloatingIp = lazySchema(() =>
  z.object({
    id: z.string(),
    floating_ip_address: z.string(),
    port_id: z.string().nullish(),
    description: z.string().nullish(),
  }),
);
export type FloatingIp = z.output<typeof FloatingIp>;
export const FloatingIpEnvelope = lazySchema(() => z.object({ floatingip: FloatingIp }));
export const FloatingIpList = lazySchema(() => z.object({ floatingips: z.array(FloatingIp) }));
