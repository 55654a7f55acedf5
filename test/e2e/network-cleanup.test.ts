/**
 * Issue 17: the lab's network leaves nothing behind, after its stop and after a SIGKILL of the lab
 * process (the next start of that lab removes what the dead one left). Real: iproute2, dnsmasq.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { isAlive, type LabNetwork, makeTempDir, readNetworkState, startLabNetwork, stopPid } from "@bmi/lab";
import { execa } from "execa";
import { afterEach, expect, it } from "vitest";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

const namespaces = async () =>
  (await execa("ip", ["netns", "list"])).stdout
    .split("\n")
    .map((line) => line.split(" ")[0] ?? "")
    .filter(Boolean);
const labId = () => `c${process.pid.toString(36)}${Math.random().toString(36).slice(2, 6)}`;

async function scratch() {
  const dir = await makeTempDir("net-cleanup");
  cleanups.push(dir.remove);
  const tftpRoot = join(dir.path, "tftp");
  await mkdir(tftpRoot);
  return { lab: join(dir.path, "lab"), tftpRoot };
}

async function start(lab: string, id: string, tftpRoot: string): Promise<LabNetwork> {
  const lines: string[] = [];
  const network = await startLabNetwork({
    labId: id,
    dir: lab,
    tftpRoot,
    provisioningVlan: 100,
    mode: "netns",
    nics: [{ node: "node-01", nic: "eth0", mac: "52:54:00:c1:00:01" }],
    log: (line) => lines.push(line),
  });
  if (network.kind !== "netns") throw new Error(`no real network: ${network.reason}`);
  cleanups.push(() => network.stop());
  return network;
}

it("stop removes the namespace (bridge and taps with it), the probe's namespace, dnsmasq and the state file", async () => {
  const { lab, tftpRoot } = await scratch();
  const network = await start(lab, labId(), tftpRoot);
  const probe = await network.addProbe("a");
  const links = (await execa("ip", ["-n", network.netns, "-o", "link", "show"])).stdout;
  expect(links).toMatch(/ br100: /);
  expect(links).toMatch(/ tap0: /);
  expect(await namespaces()).toEqual(expect.arrayContaining([network.netns, probe.netns]));
  expect(await isAlive(network.dnsmasq.pid)).toBe(true);

  await network.stop();
  expect(await namespaces()).not.toContain(network.netns);
  expect(await namespaces()).not.toContain(probe.netns);
  expect(await isAlive(network.dnsmasq.pid)).toBe(false);
  expect(await readNetworkState(lab)).toBeNull();
});

it("after a SIGKILL of the lab process, the next start removes what it left, and only that", async () => {
  const { lab, tftpRoot } = await scratch();
  const id = labId();
  const child = spawn(
    process.execPath,
    ["--import", "tsx", fileURLToPath(new URL("./network-child.ts", import.meta.url)), lab, id, tftpRoot],
    {
      env: {
        ...process.env,
        TSX_TSCONFIG_PATH: fileURLToPath(new URL("../reliability/tsconfig.child.json", import.meta.url)),
      },
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  cleanups.push(() => stopPid(child.pid as number, { signal: "SIGKILL" }));
  const [first] = (await once(child.stdout, "data")) as [Buffer];
  const left = JSON.parse(first.toString().split("\n")[0] as string) as { netns: string; dnsmasqPid: number };
  cleanups.push(() => stopPid(left.dnsmasqPid, { signal: "SIGKILL" }));
  child.kill("SIGKILL");
  await once(child, "exit");

  // A killed lab leaves its namespace and its dnsmasq (a child survives its parent's SIGKILL).
  expect(await namespaces()).toContain(left.netns);
  expect(await isAlive(left.dnsmasqPid)).toBe(true);
  expect((await readNetworkState(lab))?.ownerPid).toBe(child.pid);

  // Another lab's namespace, same prefix, is not touched by this lab's clean-up.
  const neighbour = await start(join(lab, "..", "neighbour"), labId(), tftpRoot);

  const network = await start(lab, id, tftpRoot);
  expect(await isAlive(left.dnsmasqPid)).toBe(false);
  expect(network.dnsmasq.pid).not.toBe(left.dnsmasqPid);
  expect(await namespaces()).toContain(neighbour.netns);
  expect(await isAlive(neighbour.dnsmasq.pid)).toBe(true);

  await network.stop();
  expect(await namespaces()).not.toContain(left.netns);
  await neighbour.stop();
  expect(await namespaces()).not.toContain(neighbour.netns);
});

it("refuses a lab directory whose owner is alive, touching nothing", async () => {
  const { lab, tftpRoot } = await scratch();
  const id = labId();
  const network = await start(lab, id, tftpRoot);
  // This process owns it; a second start from a live owner other than us is what must be refused.
  const state = await readNetworkState(lab);
  expect(state?.ownerPid).toBe(process.pid);
  await expect(start(lab, id, tftpRoot)).rejects.toThrow(
    /exists and no state file|belongs to the live process/,
  );
  expect(await isAlive(network.dnsmasq.pid)).toBe(true);
  expect(await namespaces()).toContain(network.netns);
});
