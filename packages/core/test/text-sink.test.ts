import { describe, expect, it } from "vitest";
import { textSink } from "../src/testing/index.js";

describe("textSink", () => {
  it("keeps every chunk written, in order, as one string", async () => {
    const sink = textSink();
    await new Promise<void>((resolve, reject) =>
      sink.stream.write("one ", (error) => (error ? reject(error) : resolve())),
    );
    await new Promise<void>((resolve, reject) =>
      sink.stream.write(Buffer.from("two"), (error) => (error ? reject(error) : resolve())),
    );
    expect(sink.text()).toBe("one two");
    expect((sink.stream as { isTTY?: boolean }).isTTY).toBeUndefined();
  });

  it("looks like a terminal with tty: true", () => {
    const { stream } = textSink({ tty: true });
    expect(stream).toMatchObject({ isTTY: true, columns: 100, rows: 40 });
  });
});
