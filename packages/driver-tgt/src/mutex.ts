/** A FIFO mutex: calls under it run one at a time. */
export function createMutex() {
  let tail: Promise<void> = Promise.resolve();
  return async <T>(work: () => Promise<T>): Promise<T> => {
    const previous = tail;
    let release: () => void = () => {};
    tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    try {
      return await work();
    } finally {
      release();
    }
  };
}

/** One FIFO mutex per key: calls on one target name run one at a time, other names in parallel. */
export function createKeyedMutex() {
  const locks = new Map<string, { run: ReturnType<typeof createMutex>; users: number }>();
  return async <T>(key: string, work: () => Promise<T>): Promise<T> => {
    let lock = locks.get(key);
    if (!lock) {
      lock = { run: createMutex(), users: 0 };
      locks.set(key, lock);
    }
    lock.users++;
    try {
      return await lock.run(work);
    } finally {
      if (--lock.users === 0) locks.delete(key);
    }
  };
}
