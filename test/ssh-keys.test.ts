/**
 * Host key pairs (local and container providers): ssh2's own generator makes about 1 ed25519 pair in 256 that
 * ssh2 cannot read back (a server given one exits before listening; it stalled the crash test
 * once). 3000 pairs would contain such a pair all but surely (p of none ≈ 1e-5).
 */
import ssh2 from 'ssh2';
import { describe, expect, it } from 'vitest';
import { generateEd25519 } from '../lib/ssh-keys.js';

describe('generated ed25519 key pairs', () => {
  it('are always readable by ssh2, with a 32-byte public key', async () => {
    const bad: string[] = [];
    for (let i = 0; i < 3000; i++) {
      const pair = await generateEd25519();
      const pub = ssh2.utils.parseKey(pair.public);
      const priv = ssh2.utils.parseKey(pair.private);
      if (pub instanceof Error || priv instanceof Error) {
        bad.push(pair.public);
        continue;
      }
      // string "ssh-ed25519" (4 + 11) + string key (4 + 32)
      const blob = (Array.isArray(pub) ? pub[0]! : pub).getPublicSSH();
      if (blob.length !== 51) bad.push(pair.public);
    }
    expect(bad).toEqual([]);
  });
});
