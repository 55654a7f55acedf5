import { Writable } from "node:stream";

/** A stream that keeps what is written to it: a `run(argv)` stdout or stderr, read back as text. */
export function sink(): { stream: Writable; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  return { stream, text: () => chunks.join("") };
}
