/**
 * AWX's own answers (captured API responses from AWX's UI test data, test/fidelity/samples/awx/)
 * through the tower provider's schemas, and the fake Tower checked against the same shapes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Inventory, Job, JobEvent, JobListItem, Page, Template, TowerHost, parseVariables } from '../../providers/tower/api.js';
import { FakeTower } from '../helpers/fake-tower.js';
import { expectSameShape, sample } from './samples.js';

let fake: FakeTower;
let fakeJob: number;

async function get(path: string): Promise<unknown> {
  const res = await fetch(`${fake.url}/api/v2/${path}`, { headers: { Authorization: `Bearer ${fake.token}` } });
  expect(res.status).toBe(200);
  return res.json();
}

beforeAll(async () => {
  fake = await FakeTower.start();
  const inv = fake.addInventory('lab');
  fake.addHost({ name: 'vm-1.example.test', inventory: inv, variables: { owner: 'jdoe' }, facts: { ansible_distribution: 'RedHat' } });
  fake.addTemplate({ name: 'deploy', kind: 'workflow', script: () => [{ name: 'create', status: 'successful' }] });
  fake.addTemplate({ name: 'jt', kind: 'job_template', script: () => [{ name: 'jt', status: 'successful', artifacts: { fqdn: 'a' } }] });
  const launched = await fetch(`${fake.url}/api/v2/job_templates/${fake.templates[1]!.id}/launch/`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${fake.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ extra_vars: JSON.stringify({ hostbroker_id: 'r-1' }) }),
  });
  fakeJob = ((await launched.json()) as { job: number }).job;
});

afterAll(() => fake.close());

describe("AWX's samples through the tower provider's schemas", () => {
  it('reads a job: status, failure fields, artifacts and its extra vars', () => {
    const job = Job.parse(sample('awx/job.json'));
    expect(job).toMatchObject({ id: 2, status: 'successful', failed: false });
    expect(parseVariables(JobListItem.parse(sample('awx/job.json')).extra_vars)).toEqual({ num_messages: 94 });
  });

  it('reads workflow and job templates, with the start capability', () => {
    for (const name of ['awx/workflow_job_template.json', 'awx/job_template.json']) {
      const t = Template.parse(sample(name));
      expect(t.summary_fields?.user_capabilities?.start).toBe(true);
    }
  });

  it('reads an inventory, a page of hosts, host facts and a page of job events', () => {
    expect(Inventory.parse(sample('awx/inventory.json')).name).toBeTruthy();
    const hosts = Page(TowerHost).parse(sample('awx/hosts.json'));
    expect(hosts.results[0]!.summary_fields?.inventory?.name).toBeTruthy();
    expect(Page(JobEvent).parse(sample('awx/job_events.json')).results.length).toBeGreaterThan(0);
  });
});

describe('the fake Tower answers in the shapes AWX does', () => {
  it('templates', async () => {
    const wf = (await get('workflow_job_templates/?name=deploy')) as { results: unknown[] };
    expectSameShape(wf.results[0], sample('awx/workflow_job_template.json'));
    const jt = (await get('job_templates/?name=jt')) as { results: unknown[] };
    expectSameShape(jt.results[0], sample('awx/job_template.json'));
  });

  it('a job (detail and list), inventories, hosts and facts', async () => {
    expectSameShape(await get(`jobs/${fakeJob}/`), sample('awx/job.json'));
    const list = (await get('jobs/')) as { results: unknown[] };
    const { artifacts: _a, job_explanation: _e, result_traceback: _t, ...listed } = sample<Record<string, unknown>>('awx/job.json');
    expectSameShape(list.results[0], listed);
    const inventories = (await get('inventories/')) as { results: Array<{ id: number }> };
    expectSameShape(inventories.results[0], sample('awx/inventory.json'));
    expectSameShape(await get(`inventories/${inventories.results[0]!.id}/hosts/`), sample('awx/hosts.json'));
  });

  it('refuses a filter on extra_vars as AWX does (prevent_search: 403 with detail)', async () => {
    const res = await fetch(`${fake.url}/api/v2/workflow_jobs/?extra_vars__icontains=r-1`, { headers: { Authorization: `Bearer ${fake.token}` } });
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ detail: 'Filtering on extra_vars is not allowed.' });
  });
});
