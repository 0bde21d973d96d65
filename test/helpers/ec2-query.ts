/**
 * A local EC2 endpoint that speaks EC2's Query API as the EC2 API reference documents it: form
 * POSTs signed with Signature Version 4 (checked here with the test's secret), answers in the
 * `http://ec2.amazonaws.com/doc/2016-11-15/` XML namespace, errors as
 * `<Response><Errors><Error><Code>…</Code><Message>…</Message></Error></Errors><RequestID>…</RequestID></Response>`.
 * The real @aws-sdk/client-ec2 points at it with `endpoint`, so signing, serialization, XML
 * parsing and idempotency tokens run for real. RunInstances, DescribeInstances (filters,
 * MaxResults/NextToken), TerminateInstances and CreateTags.
 */
import { createHash, createHmac, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { closeServer, listenOnLoopback, readBody } from './http-fake.js';

const NS = 'http://ec2.amazonaws.com/doc/2016-11-15/';

export interface QueryInstance {
  id: string;
  imageId: string;
  type: string;
  state: 'pending' | 'running' | 'shutting-down' | 'terminated';
  /** DescribeInstances calls it stays `pending`. */
  polls: number;
  privateIp: string;
  subnetId: string;
  keyName?: string;
  launchTime: string;
  tags: Map<string, string>;
  clientToken?: string;
}

/** An error EC2 answers instead of doing the action. */
export interface QueryFault {
  action: string;
  code: string;
  message: string;
  status: number;
  times: number;
}

const STATE_CODES = { pending: 0, running: 16, 'shutting-down': 32, terminated: 48 } as const;

export class Ec2QueryServer {
  readonly server: Server;
  url = '';
  readonly accessKeyId = 'AKIDEXAMPLEHOSTBROKER';
  readonly secretAccessKey = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
  readonly region = 'eu-west-1';
  readonly instances = new Map<string, QueryInstance>();
  readonly faults: QueryFault[] = [];
  /** Every request: action and its parameters (as sent on the wire). */
  readonly requests: Array<{ action: string; params: URLSearchParams }> = [];
  /** Most reservations in one DescribeInstances page, even without MaxResults. */
  pageSize = 1000;
  pendingPolls = 1;
  private counter = 0;
  private readonly tokens = new Map<string, { id: string; fingerprint: string }>();

  private constructor() {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => this.error(res, 500, 'InternalError', String(error)));
    });
  }

  static async start(): Promise<Ec2QueryServer> {
    const s = new Ec2QueryServer();
    s.url = await listenOnLoopback(s.server);
    return s;
  }

  close(): Promise<void> {
    return closeServer(this.server);
  }

  /** ec2 instance settings that reach this endpoint with its credentials and fast polling. */
  settings(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return {
      region: this.region,
      endpoint: this.url,
      accessKeyId: this.accessKeyId,
      secretAccessKey: this.secretAccessKey,
      address: 'private',
      pollInterval: 1,
      retryDelay: 1,
      retryMaxDelay: 5,
      runningTimeout: 5000,
      ...extra,
    };
  }

  /** Answers the next `times` calls of `action` with an EC2 error. */
  fail(action: string, code: string, message: string, status = 400, times = 1): void {
    this.faults.push({ action, code, message, status, times });
  }

  live(id: string | undefined): boolean {
    const i = id ? this.instances.get(id) : undefined;
    return !!i && i.state !== 'terminated' && i.state !== 'shutting-down';
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readBody(req);
    const authError = this.checkSignature(req, body);
    if (authError) return this.error(res, 401, authError.code, authError.message);
    const params = new URLSearchParams(body);
    const action = params.get('Action') ?? '';
    this.requests.push({ action, params });
    if (params.get('Version') !== '2016-11-15') return this.error(res, 400, 'InvalidParameterValue', `Unsupported API version ${params.get('Version')}`);
    const fault = this.faults.find((f) => f.action === action && f.times > 0);
    if (fault) {
      fault.times--;
      return this.error(res, fault.status, fault.code, fault.message);
    }
    switch (action) {
      case 'RunInstances':
        return this.run(params, res);
      case 'DescribeInstances':
        return this.describe(params, res);
      case 'TerminateInstances':
        return this.terminate(params, res);
      case 'CreateTags':
        return this.createTags(params, res);
      default:
        return this.error(res, 400, 'InvalidAction', `The action ${action} is not valid for this web service.`);
    }
  }

  /** Verifies SigV4 as AWS does: the same canonical request, string to sign and HMAC chain. */
  private checkSignature(req: IncomingMessage, body: string): { code: string; message: string } | undefined {
    const auth = req.headers.authorization ?? '';
    const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/ec2\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(auth);
    if (!m) return { code: 'AuthFailure', message: 'AWS was not able to validate the provided access credentials' };
    const [, key, date, region, signedHeaders, signature] = m as unknown as [string, string, string, string, string, string];
    if (key !== this.accessKeyId) return { code: 'AuthFailure', message: 'AWS was not able to validate the provided access credentials' };
    const amzDate = String(req.headers['x-amz-date'] ?? '');
    const url = new URL(req.url ?? '/', 'http://x');
    const query = [...url.searchParams]
      .map(([k, v]) => `${enc(k)}=${enc(v)}`)
      .sort()
      .join('&');
    const headers = signedHeaders
      .split(';')
      .map(
        (h) =>
          `${h}:${String(req.headers[h] ?? '')
            .trim()
            .replace(/\s+/g, ' ')}\n`,
      )
      .join('');
    const payloadHash = String(req.headers['x-amz-content-sha256'] ?? sha256(body));
    const canonical = [req.method, url.pathname, query, headers, signedHeaders, payloadHash].join('\n');
    const scope = `${date}/${region}/ec2/aws4_request`;
    const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
    let k: Buffer = hmac(`AWS4${this.secretAccessKey}`, date);
    for (const part of [region, 'ec2', 'aws4_request']) k = hmac(k, part);
    if (hmac(k, toSign).toString('hex') !== signature) {
      return {
        code: 'AuthFailure',
        message: 'AWS was not able to validate the provided access credentials',
      };
    }
    return undefined;
  }

  private run(p: URLSearchParams, res: ServerResponse): void {
    const token = p.get('ClientToken') ?? undefined;
    // Idempotency: the same token with the same parameters is the same launch; other parameters are an error.
    const fingerprint = [...p]
      .filter(([k]) => k !== 'ClientToken')
      .map((e) => e.join('='))
      .sort()
      .join('&');
    if (token && this.tokens.has(token)) {
      const seen = this.tokens.get(token)!;
      if (seen.fingerprint !== fingerprint)
        return this.error(
          res,
          400,
          'IdempotentParameterMismatch',
          'The client token you have provided is associated with a resource that is already deleted, or the request parameters do not match.',
        );
      return this.xml(res, 'RunInstancesResponse', this.reservationXml([this.instances.get(seen.id)!]));
    }
    if (!p.get('ImageId')?.startsWith('ami-')) return this.error(res, 400, 'InvalidAMIID.Malformed', `Invalid id: "${p.get('ImageId')}" (expecting "ami-...")`);
    const id = `i-${(0x0a000000 + ++this.counter).toString(16).padStart(17, '0')}`;
    const tags = new Map<string, string>();
    for (let i = 1; p.has(`TagSpecification.${i}.ResourceType`); i++) {
      if (p.get(`TagSpecification.${i}.ResourceType`) !== 'instance') continue;
      for (let j = 1; p.has(`TagSpecification.${i}.Tag.${j}.Key`); j++)
        tags.set(p.get(`TagSpecification.${i}.Tag.${j}.Key`)!, p.get(`TagSpecification.${i}.Tag.${j}.Value`) ?? '');
    }
    const instance: QueryInstance = {
      id,
      imageId: p.get('ImageId')!,
      type: p.get('InstanceType') ?? 'm1.small',
      state: 'pending',
      polls: this.pendingPolls,
      privateIp: `10.0.1.${10 + (this.counter % 240)}`,
      subnetId: p.get('SubnetId') ?? 'subnet-0default00000000',
      ...(p.get('KeyName') ? { keyName: p.get('KeyName')! } : {}),
      launchTime: new Date().toISOString(),
      tags,
      ...(token ? { clientToken: token } : {}),
    };
    this.instances.set(id, instance);
    if (token) this.tokens.set(token, { id, fingerprint });
    this.xml(res, 'RunInstancesResponse', this.reservationXml([instance]));
  }

  private describe(p: URLSearchParams, res: ServerResponse): void {
    const ids = list(p, 'InstanceId');
    const filters: Array<{ name: string; values: string[] }> = [];
    for (let i = 1; p.has(`Filter.${i}.Name`); i++) filters.push({ name: p.get(`Filter.${i}.Name`)!, values: list(p, `Filter.${i}.Value`) });
    const max = p.get('MaxResults');
    if (max && ids.length)
      return this.error(res, 400, 'InvalidParameterCombination', 'The parameter instancesSet cannot be used with the parameter maxResults');
    if (max && (Number(max) < 5 || Number(max) > 1000))
      return this.error(res, 400, 'InvalidParameterValue', `Value ( ${max} ) for parameter maxResults is invalid. Expecting a value between 5 and 1000.`);
    for (const id of ids) {
      if (!this.instances.has(id)) return this.error(res, 400, 'InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`);
    }
    let found = ids.length ? ids.map((id) => this.instances.get(id)!) : [...this.instances.values()];
    for (const f of filters) {
      const match = (i: QueryInstance): boolean => {
        if (f.name === 'instance-state-name') return f.values.includes(i.state);
        if (f.name === 'instance-id') return f.values.includes(i.id);
        if (f.name.startsWith('tag:')) return f.values.includes(i.tags.get(f.name.slice(4)) ?? '\u0000');
        if (f.name === 'tag-key') return f.values.some((v) => i.tags.has(v));
        throw Object.assign(new Error(`The filter '${f.name}' is invalid`), { code: 'InvalidParameterValue' });
      };
      try {
        found = found.filter(match);
      } catch (error) {
        return this.error(res, 400, 'InvalidParameterValue', (error as Error).message);
      }
    }
    for (const i of found) this.advance(i);
    const size = Math.min(max ? Number(max) : this.pageSize, this.pageSize);
    const start = p.get('NextToken') ? Number(Buffer.from(p.get('NextToken')!, 'base64url').toString()) : 0;
    const page = found.slice(start, start + size);
    const next = start + size < found.length ? Buffer.from(String(start + size)).toString('base64url') : undefined;
    const reservations = page.map((i) => `<item>${this.reservationXml([i])}</item>`).join('');
    this.xml(res, 'DescribeInstancesResponse', `<reservationSet>${reservations}</reservationSet>${next ? `<nextToken>${next}</nextToken>` : ''}`);
  }

  private terminate(p: URLSearchParams, res: ServerResponse): void {
    const ids = list(p, 'InstanceId');
    const missing = ids.find((id) => !this.instances.has(id));
    if (missing) return this.error(res, 400, 'InvalidInstanceID.NotFound', `The instance ID '${missing}' does not exist`);
    const items = ids.map((id) => {
      const i = this.instances.get(id)!;
      const previous = i.state;
      if (i.state !== 'terminated') i.state = 'shutting-down';
      return `<item><instanceId>${id}</instanceId><currentState>${stateXml(i.state)}</currentState><previousState>${stateXml(previous)}</previousState></item>`;
    });
    this.xml(res, 'TerminateInstancesResponse', `<instancesSet>${items.join('')}</instancesSet>`);
  }

  private createTags(p: URLSearchParams, res: ServerResponse): void {
    const ids = list(p, 'ResourceId');
    const missing = ids.find((id) => !this.instances.has(id));
    if (missing) return this.error(res, 400, 'InvalidInstanceID.NotFound', `The instance ID '${missing}' does not exist`);
    for (const id of ids) for (let j = 1; p.has(`Tag.${j}.Key`); j++) this.instances.get(id)!.tags.set(p.get(`Tag.${j}.Key`)!, p.get(`Tag.${j}.Value`) ?? '');
    this.xml(res, 'CreateTagsResponse', '<return>true</return>');
  }

  /** One DescribeInstances/RunInstances poll: pending instances start; shutting-down ones end. */
  private advance(i: QueryInstance): void {
    if (i.state === 'pending' && i.polls-- <= 0) i.state = 'running';
    else if (i.state === 'shutting-down') i.state = 'terminated';
  }

  private reservationXml(instances: QueryInstance[]): string {
    const items = instances
      .map((i) => {
        const tags = [...i.tags].map(([k, v]) => `<item><key>${esc(k)}</key><value>${esc(v)}</value></item>`).join('');
        const running = i.state === 'running';
        return [
          '<item>',
          `<instanceId>${i.id}</instanceId><imageId>${i.imageId}</imageId>`,
          `<instanceState>${stateXml(i.state)}</instanceState>`,
          `<privateDnsName>ip-${i.privateIp.replaceAll('.', '-')}.${this.region}.compute.internal</privateDnsName>`,
          i.keyName ? `<keyName>${esc(i.keyName)}</keyName>` : '',
          `<instanceType>${i.type}</instanceType><launchTime>${i.launchTime}</launchTime>`,
          `<placement><availabilityZone>${this.region}a</availabilityZone><tenancy>default</tenancy></placement>`,
          `<subnetId>${i.subnetId}</subnetId><vpcId>vpc-0bbb2222</vpcId>`,
          running || i.state === 'pending' ? `<privateIpAddress>${i.privateIp}</privateIpAddress>` : '',
          '<architecture>x86_64</architecture><rootDeviceType>ebs</rootDeviceType>',
          i.clientToken ? `<clientToken>${esc(i.clientToken)}</clientToken>` : '',
          `<tagSet>${tags}</tagSet>`,
          '</item>',
        ].join('');
      })
      .join('');
    return `<reservationId>r-0${(this.counter + 0xabc).toString(16).padStart(16, '0')}</reservationId><ownerId>123456789012</ownerId><groupSet/><instancesSet>${items}</instancesSet>`;
  }

  private xml(res: ServerResponse, root: string, inner: string): void {
    const text = `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="${NS}"><requestId>${randomUUID()}</requestId>${inner}</${root}>`;
    res.writeHead(200, { 'content-type': 'text/xml;charset=UTF-8', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private error(res: ServerResponse, status: number, code: string, message: string): void {
    const text = `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code><Message>${esc(message)}</Message></Error></Errors><RequestID>${randomUUID()}</RequestID></Response>`;
    res.writeHead(status, { 'content-type': 'text/xml;charset=UTF-8', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }
}

function list(p: URLSearchParams, prefix: string): string[] {
  const out: string[] = [];
  for (let i = 1; p.has(`${prefix}.${i}`); i++) out.push(p.get(`${prefix}.${i}`)!);
  return out;
}

function stateXml(state: QueryInstance['state']): string {
  return `<code>${STATE_CODES[state]}</code><name>${state}</name>`;
}

function esc(s: string): string {
  return s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

function enc(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}
