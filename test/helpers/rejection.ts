/** What a promise rejected with; fails the test when it resolves instead. */
export async function rejection<E extends Error = Error>(p: Promise<unknown>): Promise<E> {
  try {
    await p;
  } catch (error) {
    return error as E;
  }
  throw new Error('expected a rejection, but the promise resolved');
}
