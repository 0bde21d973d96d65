/**
 * The etcd store's public error, apart from its client code, so that importing hostbroker does
 * not load the client (and Node's http, https and tls with it).
 * @module
 */
import { InventoryError } from '../errors.js';

/** The cluster did not answer as a quorum: which endpoints answered, which did not. */
export class EtcdUnavailableError extends InventoryError {
  readonly endpoints: { answered: string[]; healthy: string[]; silent: string[] };
  constructor(message: string, endpoints: EtcdUnavailableError['endpoints'], options: { cause?: unknown } = {}) {
    super(message, options);
    this.endpoints = endpoints;
  }
  override toJSON(): Record<string, unknown> {
    return { ...super.toJSON(), endpoints: this.endpoints };
  }
}
