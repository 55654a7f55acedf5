import { access, readlink, stat } from "node:fs/promises";
import { connect } from "node:net";
import { isAlive, startTgtd, type TgtdHandle } from "@bmi/lab";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

const targetNames = async (tgtd: TgtdHandle) =>
  [
    ...(await tgtd.tgtadm(["--lld", "iscsi", "--mode", "target", "--op", "show"])).stdout.matchAll(
      /^Target \d+: (.*)$/gm,
    ),
  ].map((m) => m[1]);

describe("the tgtd lab", () => {
  const started: TgtdHandle[] = [];
  afterAll(async () => {
    for (const tgtd of started) await tgtd.stop();
  });

  it("runs several tgtds side by side, each with its own portal, control port and targets", async () => {
    const [a, b] = await Promise.all([startTgtd(), startTgtd()]);
    started.push(a, b);
    expect(a.port).not.toBe(b.port);
    expect(a.controlPort).not.toBe(b.controlPort);
    expect(await listening(a.port)).toBe(true);
    expect(await listening(b.port)).toBe(true);
    const created = await a.tgtadm([
      "--lld",
      "iscsi",
      "--mode",
      "target",
      "--op",
      "new",
      "--tid",
      "1",
      "--targetname",
      "iqn.2026-11.org.bmi.test:only-in-a",
    ]);
    expect(created.exitCode).toBe(0);
    expect(await targetNames(a)).toEqual(["iqn.2026-11.org.bmi.test:only-in-a"]);
    expect(await targetNames(b)).toEqual([]);
  });

  it("kill() is a crash (targets lost) and restart() comes back on the same portal and control port", async () => {
    const tgtd = await startTgtd();
    started.push(tgtd);
    const { port, controlPort, pid } = tgtd;
    await tgtd.tgtadm([
      "--lld",
      "iscsi",
      "--mode",
      "target",
      "--op",
      "new",
      "--tid",
      "1",
      "--targetname",
      "iqn.x:y",
    ]);
    await tgtd.kill();
    expect(await isAlive(pid)).toBe(false);
    await tgtd.restart();
    expect(tgtd.pid).not.toBe(pid);
    expect([tgtd.port, tgtd.controlPort]).toEqual([port, controlPort]);
    expect(await listening(port)).toBe(true);
    expect(await targetNames(tgtd)).toEqual([]);
  });

  it("kill() and restart() work on a tgtd inside a network namespace (the lab network's): the new one is in it, on the same port", async () => {
    // Our own namespace, removed at the end; only its loopback is up.
    const netns = `bmi-tgt-lab-${process.pid}`;
    await execa("ip", ["netns", "add", netns]);
    try {
      await execa("ip", ["-n", netns, "link", "set", "lo", "up"]);
      const inNetns = `net:[${(await stat(`/run/netns/${netns}`)).ino}]`;
      const listeningIn = async (port: number) =>
        (await execa("ip", ["netns", "exec", netns, "ss", "-Htln", `sport = :${port}`])).stdout.trim() !== "";
      const tgtd = await startTgtd({ netns });
      try {
        const { port, controlPort, pid } = tgtd;
        expect(await readlink(`/proc/${pid}/ns/net`)).toBe(inNetns);
        await tgtd.kill();
        expect(await isAlive(pid)).toBe(false);
        expect(await listeningIn(port)).toBe(false);
        await tgtd.restart();
        expect(tgtd.pid).not.toBe(pid);
        expect(await readlink(`/proc/${tgtd.pid}/ns/net`)).toBe(inNetns);
        expect([tgtd.port, tgtd.controlPort]).toEqual([port, controlPort]);
        expect(await listeningIn(port)).toBe(true);
        // tgtadm reaches it from the host through its control socket, as the lab's drivers do.
        expect(await targetNames(tgtd)).toEqual([]);
      } finally {
        await tgtd.stop();
      }
    } finally {
      await execa("ip", ["netns", "delete", netns]);
    }
  });

  it("stop() ends tgtd even with targets defined, frees the port and removes its IPC files", async () => {
    const tgtd = await startTgtd();
    await tgtd.tgtadm([
      "--lld",
      "iscsi",
      "--mode",
      "target",
      "--op",
      "new",
      "--tid",
      "3",
      "--targetname",
      "iqn.x:z",
    ]);
    const { pid, port, controlPort } = tgtd;
    await tgtd.stop();
    expect(await isAlive(pid)).toBe(false);
    expect(await listening(port)).toBe(false);
    expect(await exists(`/var/run/tgtd/socket.${controlPort}`)).toBe(false);
    expect(await exists(`/var/run/tgtd/socket.${controlPort}.lock`)).toBe(false);
    expect(await exists(tgtd.logFile)).toBe(false);
  });

  it("refuses to share a control port another tgtd holds instead of talking to the wrong daemon", async () => {
    const first = await startTgtd();
    started.push(first);
    await expect(startTgtd({ controlPort: first.controlPort, timeoutMs: 5000 })).rejects.toThrow(
      /control port \d+ is taken/,
    );
    expect(await isAlive(first.pid)).toBe(true);
  });
});
