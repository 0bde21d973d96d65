/**
 * What a refused certificate or a failed TLS handshake means for the user: a {@link TlsError}
 * naming the host and Node's code, with what to set (`ca_file`, `insecure`) or fix.
 * @module
 */
import { TlsError } from './errors.js';
import { scrub } from './secrets.js';

/** Codes of certificates Node refused for want of a trusted CA. */
const TRUST_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'PATH_LENGTH_EXCEEDED',
]);
const OTHER_TLS_CODES = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID', 'HOSTNAME_MISMATCH']);

/** The TLS failure in an error's cause chain (undici wraps it in `fetch failed`). */
function tlsCause(error: unknown): { code: string; message: string } | undefined {
  let e = error as { code?: unknown; message?: string; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < 6; depth++, e = e.cause as typeof e) {
    const code = typeof e.code === 'string' ? e.code : '';
    if (TRUST_CODES.has(code) || OTHER_TLS_CODES.has(code) || code.startsWith('ERR_SSL_')) return { ...e, code, message: e.message ?? code };
  }
  return undefined;
}

/** A TlsError when `error` (or its cause chain) is a TLS failure talking to `url`, else undefined. */
export function tlsErrorOf(error: unknown, provider: string, url: URL): TlsError | undefined {
  const cause = tlsCause(error);
  if (!cause) return undefined;
  const host = `${url.hostname}:${url.port || (url.protocol === 'https:' ? 443 : 80)}`;
  const code = cause.code;
  const fix = `set \`ca_file\` to the PEM file of the CA that signed it (relative to the broker directory) in the ${provider} instance settings${provider === 'openstack' ? ' (or `cacert` in clouds.yaml)' : ''}, or \`insecure: true\` to skip verification`;
  let message: string;
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') {
    message = `the certificate of ${host} ${code === 'CERT_HAS_EXPIRED' ? 'has expired' : "is not valid yet (check this machine's clock)"} (${code}); ask the service's administrators to renew it, or set \`insecure: true\` in the ${provider} instance settings to skip verification.`;
  } else if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH') {
    const names = (cause as { cert?: { subjectaltname?: string } }).cert?.subjectaltname;
    message = `the certificate of ${host} is for another host${names ? ` (${names})` : ''} (${code}); use a host name the certificate names in the URL, or set \`insecure: true\` in the ${provider} instance settings to skip verification.`;
  } else if (TRUST_CODES.has(code)) {
    message = `certificate not trusted: ${host} presented a certificate hostbroker cannot verify (${code}: ${cause.message}); ${fix}.`;
  } else {
    message = `the TLS handshake with ${host} failed (${code}: ${cause.message}); check that the URL's scheme (https or http) is what the service speaks, or ${fix}.`;
  }
  return new TlsError(provider, scrub(message), { cause: error, tlsCode: code, host });
}
