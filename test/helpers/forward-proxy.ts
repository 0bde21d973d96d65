// A forward proxy for tests, run as its own process (see startForwardProxy in tls.ts): CONNECT tunnels (HTTPS) and absolute-URI
// requests (plain HTTP), on 127.0.0.1. Prints its port on the first stdout line and answers
// `GET /__seen` (a request to the proxy itself) with the JSON list of targets it carried.
import { createServer, request } from 'node:http';
import { type AddressInfo, connect } from 'node:net';

const seen: { method: string; target: string }[] = [];
const server = createServer((req, res) => {
  if (req.url === '/__seen') {
    res.setHeader('content-type', 'application/json');
    return void res.end(JSON.stringify(seen));
  }
  let target: URL;
  try {
    target = new URL(req.url ?? '');
  } catch {
    res.statusCode = 400;
    return void res.end('not a proxy request');
  }
  seen.push({ method: req.method ?? 'GET', target: target.host });
  const upstream = request(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  upstream.on('error', () => {
    res.statusCode = 502;
    res.end();
  });
  req.pipe(upstream);
});

server.on('connect', (req, client, head) => {
  seen.push({ method: 'CONNECT', target: req.url ?? '' });
  const [host, port] = splitHostPort(req.url ?? '');
  const upstream = connect(port, host, () => {
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    if (head.length) upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  });
  const drop = () => {
    upstream.destroy();
    client.destroy();
  };
  upstream.on('error', () => {
    if (client.writable) client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
    drop();
  });
  client.on('error', drop);
});

function splitHostPort(value: string): [string, number] {
  const i = value.lastIndexOf(':');
  return [value.slice(0, i).replace(/^\[|\]$/g, ''), Number(value.slice(i + 1))];
}

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
