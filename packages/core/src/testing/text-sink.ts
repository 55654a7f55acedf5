import { Writable } from "node:stream";

export interface TextSink {
  /** Pass it where output goes (a CLI's `stdout`/`stderr`, a logger's destination). */
  readonly stream: Writable;
  /** Everything written so far, as one string. */
  text(): string;
}

/**
 * A stream that keeps what is written to it, for reading a command's output back in a test.
 * `tty: true` makes it look like a 100×40 terminal, so code that checks `isTTY` (progress
 * displays) behaves as it would for a user.
 */
export function textSink(options: { tty?: boolean } = {}): TextSink {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  if (options.tty) Object.assign(stream, { isTTY: true, columns: 100, rows: 40 });
  return { stream, text: () => chunks.join("") };
}
