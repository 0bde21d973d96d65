/**
 * ed25519 key pairs in OpenSSH format that ssh2 can read back.
 * @module
 */
import { ProviderError, importOptional } from './errors.js';

/** An OpenSSH private key and its `ssh-ed25519 AAAA...` public line. */
export interface KeyPair {
  private: string;
  public: string;
}

/**
 * Generates an ed25519 key pair with ssh2, again when ssh2 cannot parse what it generated:
 * ssh2 (up to 1.17.0 at least, upstream mscdex/ssh2#1390) strips every leading zero byte of the
 * public key, so about 1 pair in 256 has a 31-byte key that `parseKey` rejects ("Malformed
 * OpenSSH public key"): a local server given one exits before listening, a container host
 * given one refuses the login. `provider` names who asked, for the error.
 */
export async function generateEd25519(comment?: string, provider = 'local'): Promise<KeyPair> {
  // ssh2 is CommonJS: Node's ESM import puts all of it on `default`.
  const { utils } = (await importOptional('ssh2', 'SSH host keys', () => import('ssh2'))).default;
  // Each try fails with p = 1/256; 20 failures in a row mean something else is wrong.
  for (let i = 0; i < 20; i++) {
    const pair = utils.generateKeyPairSync('ed25519', comment ? { comment } : undefined);
    if (!(utils.parseKey(pair.public) instanceof Error) && !(utils.parseKey(pair.private) instanceof Error)) return pair;
  }
  throw new ProviderError(provider, 'ssh2 generated 20 ed25519 key pairs in a row that it cannot parse; reinstall or update the ssh2 package.');
}
