/**
 * One updating progress line on stderr for multi-host work, drawn only on a terminal.
 * @module
 */
import type { ProgressEvent } from '../broker/index.js';
import type { UpProgressEvent } from '../topology/up.js';

/** Draws and clears the progress line. All methods do nothing when stderr is not a TTY. */
export class ProgressLine {
  private drawn = false;
  /** While `up` runs, its own events replace the per-checkout ones. */
  deployment = false;
  constructor(private readonly stream: NodeJS.WriteStream) {}

  get enabled(): boolean {
    return this.stream.isTTY === true;
  }

  /** For `new Broker({ onProgress })`. */
  readonly onBroker = (e: ProgressEvent): void => {
    if (this.deployment || e.total < 2) return;
    this.draw(`${e.operation} ${e.done}/${e.total}${e.host ? ` · ${e.host} ${e.outcome ?? ''}` : ''}`);
  };

  /** For `broker.up(..., { onProgress })`. */
  readonly onUp = (e: UpProgressEvent): void => {
    const retry = e.attempt > 1 ? ` (attempt ${e.attempt})` : '';
    this.draw(`up ${e.done}/${e.total} · ${e.host} [${e.provider}] ${e.outcome}${retry}`);
  };

  private draw(text: string): void {
    if (!this.enabled) return;
    const width = Math.max(20, (this.stream.columns || 80) - 1);
    this.stream.write(`\r\x1b[2K${text.slice(0, width)}`);
    this.drawn = true;
  }

  /** Clears the line before normal output. */
  clear(): void {
    if (this.drawn) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }
}
