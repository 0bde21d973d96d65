/**
 * Errors of host configuration.
 * @module
 */
import { BrokerError } from '../../lib/errors.js';

/** `validate` found the host not as a whiteprint wants it; `drift` lists what differs. */
export class DriftError extends BrokerError {
  override readonly code = 'DRIFT' as const;
  static override readonly exitCode = 11;
  readonly drift: string[];
  constructor(message: string, drift: string[]) {
    super(message);
    this.drift = drift;
  }
  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), drift: this.drift };
  }
}
