/**
 * `obj[key] = value` that keeps every key as data. A key read from a user's file can be
 * `__proto__`: plain assignment would set the object's prototype and lose the key, so the
 * settings schema could not name it; defining the property keeps it.
 */
export function setOwn(obj: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}
