/**
 * XML helpers for Beaker: escaping, a minimal XML-RPC codec (Beaker's documented `/RPC2`
 * endpoint is how jobs are submitted and listed), and job XML generation.
 * @module
 */

/** Escapes text for element content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!);
}

/** Reverses {@link escapeXml} and numeric character references. */
export function unescapeXml(text: string): string {
  return text.replace(/&(#x[0-9a-f]+|#\d+|amp|lt|gt|quot|apos);/gi, (_m, e: string) => {
    if (e[0] === '#') return String.fromCodePoint(e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : Number(e.slice(1)));
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" }[e.toLowerCase()]!;
  });
}

/** A CDATA section; `]]>` inside is split so it cannot end the section early. */
export function cdata(text: string): string {
  return `<![CDATA[${text.split(']]>').join(']]]]><![CDATA[>')}]]>`;
}

/** Values XML-RPC carries. */
export type XmlRpcValue = string | number | boolean | null | XmlRpcValue[] | { [key: string]: XmlRpcValue };

/** A `<methodCall>` document. */
export function encodeCall(method: string, params: XmlRpcValue[]): string {
  return `<?xml version="1.0"?>\n<methodCall><methodName>${escapeXml(method)}</methodName><params>${params
    .map((p) => `<param><value>${encodeValue(p)}</value></param>`)
    .join('')}</params></methodCall>`;
}

function encodeValue(v: XmlRpcValue): string {
  if (v === null) return '<nil/>';
  if (typeof v === 'string') return `<string>${escapeXml(v)}</string>`;
  if (typeof v === 'boolean') return `<boolean>${v ? 1 : 0}</boolean>`;
  if (typeof v === 'number') return Number.isInteger(v) ? `<int>${v}</int>` : `<double>${v}</double>`;
  if (Array.isArray(v)) return `<array><data>${v.map((x) => `<value>${encodeValue(x)}</value>`).join('')}</data></array>`;
  return `<struct>${Object.entries(v)
    .map(([k, x]) => `<member><name>${escapeXml(k)}</name><value>${encodeValue(x)}</value></member>`)
    .join('')}</struct>`;
}

/** A fault answer of an XML-RPC call. */
export class XmlRpcFault extends Error {
  constructor(
    readonly faultCode: number,
    readonly faultString: string,
  ) {
    super(faultString);
  }
}

interface Node {
  name: string;
  children: Node[];
  text: string;
}

/** Parses a small, well-formed XML document into a tree (no namespaces, no DTD). */
export function parseXml(xml: string): Node {
  const root: Node = { name: '#root', children: [], text: '' };
  const stack: Node[] = [root];
  const re = /<!\[CDATA\[([\s\S]*?)\]\]>|<\?[\s\S]*?\?>|<!--[\s\S]*?-->|<(\/?)([A-Za-z_][\w.:-]*)[^>]*?(\/?)>|([^<]+)/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(xml))) {
    const top = stack[stack.length - 1]!;
    if (m[1] !== undefined) top.text += m[1];
    else if (m[5] !== undefined) top.text += unescapeXml(m[5]);
    else if (m[3]) {
      if (m[2]) {
        if (top.name !== m[3]) throw new Error(`unexpected </${m[3]}> inside <${top.name}>`);
        stack.pop();
      } else {
        const node: Node = { name: m[3], children: [], text: '' };
        top.children.push(node);
        if (!m[4]) stack.push(node);
      }
    }
  }
  if (stack.length !== 1) throw new Error(`unclosed <${stack[stack.length - 1]!.name}>`);
  return root;
}

const child = (n: Node, name: string) => n.children.find((c) => c.name === name);

function decodeValue(value: Node): XmlRpcValue {
  const typed = value.children[0];
  if (!typed) return value.text;
  switch (typed.name) {
    case 'string':
      return typed.text;
    case 'int':
    case 'i4':
    case 'i8':
    case 'double':
      return Number(typed.text.trim());
    case 'boolean':
      return typed.text.trim() === '1';
    case 'nil':
      return null;
    case 'dateTime.iso8601':
    case 'base64':
      return typed.text.trim();
    case 'array':
      return (child(typed, 'data')?.children ?? []).filter((c) => c.name === 'value').map(decodeValue);
    case 'struct': {
      const out: Record<string, XmlRpcValue> = {};
      for (const member of typed.children.filter((c) => c.name === 'member')) {
        const v = child(member, 'value');
        out[child(member, 'name')?.text ?? ''] = v ? decodeValue(v) : null;
      }
      return out;
    }
    default:
      throw new Error(`unknown XML-RPC type <${typed.name}>`);
  }
}

/** Decodes a `<methodResponse>`: the value, or throws {@link XmlRpcFault}. */
export function decodeResponse(xml: string): XmlRpcValue {
  const response = child(parseXml(xml), 'methodResponse');
  if (!response) throw new Error('not an XML-RPC methodResponse');
  const fault = child(response, 'fault');
  if (fault) {
    const v = child(fault, 'value');
    const f = (v ? decodeValue(v) : {}) as Record<string, XmlRpcValue>;
    throw new XmlRpcFault(Number(f.faultCode ?? 0), String(f.faultString ?? 'unknown fault'));
  }
  const value = child(child(child(response, 'params') ?? response, 'param') ?? response, 'value');
  if (!value) throw new Error('XML-RPC methodResponse without a value');
  return decodeValue(value);
}
