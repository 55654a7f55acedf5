import { parseInput } from "@bmi/core";
import { z } from "zod";
import { allocateVlan, type HilState, MOCK_SWITCH_TYPE, type NicState } from "./state.js";

const nicSchema = z.object({
  label: z.string().min(1),
  macaddr: z.string(),
  /**
   * Where the NIC is cabled: `{switch, port}`, `false` for an uncabled NIC, or absent to cable it
   * to a generated port `gi1/0/<n>` on switch `sw0`.
   */
  cable: z
    .union([z.object({ switch: z.string().min(1), port: z.string().min(1) }), z.literal(false)])
    .optional(),
});

const fixtureSchema = z.object({
  projects: z.array(z.string().min(1)).default([]),
  users: z
    .array(
      z.object({
        name: z.string().min(1),
        password: z.string(),
        isAdmin: z.boolean().default(false),
        projects: z.array(z.string().min(1)).default([]),
      }),
    )
    .default([]),
  switches: z
    .array(z.object({ name: z.string().min(1), ports: z.array(z.string().min(1)).default([]) }))
    .default([]),
  nodes: z
    .array(
      z.object({
        name: z.string().min(1),
        project: z.string().min(1).nullable().default(null),
        /** Plain values; stored JSON-encoded like HIL does. */
        metadata: z.record(z.string(), z.unknown()).default({}),
        obmd: z.object({ uri: z.string().url(), adminToken: z.string() }).optional(),
        obmEnabled: z.boolean().default(false),
        nics: z.array(nicSchema).default([]),
      }),
    )
    .default([]),
  networks: z
    .array(
      z.object({
        name: z.string().min(1),
        /** A project name or `"admin"`. */
        owner: z.string().min(1).default("admin"),
        /** Projects allowed to attach; empty = public. */
        access: z.array(z.string().min(1)).default([]),
        /** A VLAN id; absent = allocated from the pool. */
        netId: z.string().optional(),
      }),
    )
    .default([]),
  /** Attachments already applied (DONE). */
  attachments: z
    .array(
      z.object({
        node: z.string(),
        nic: z.string(),
        network: z.string(),
        channel: z.string().default("vlan/native"),
      }),
    )
    .default([]),
});

/** A HIL world described as a plain object (input form: most fields optional). */
export type HilFixture = z.input<typeof fixtureSchema>;

/**
 * Loads a fixture into the state, checking its references so a typo fails loudly here and not
 * as a puzzling 404 in a test.
 */
export function loadFixture(state: HilState, input: HilFixture, baseObmdUri = "http://127.0.0.1:1"): void {
  const fixture = parseInput(fixtureSchema, input, "fixture", "isolation");
  const bad = (message: string): never =>
    parseInput(z.never({ error: message }), undefined, "fixture", "isolation");
  const needProject = (p: string) => state.projects.has(p) || bad(`unknown project ${p}`);

  for (const p of fixture.projects) state.projects.add(p);
  for (const u of fixture.users) {
    for (const p of u.projects) needProject(p);
    state.users.set(u.name, {
      name: u.name,
      password: u.password,
      isAdmin: u.isAdmin,
      projects: new Set(u.projects),
    });
  }
  for (const s of fixture.switches) {
    state.switches.set(s.name, {
      name: s.name,
      type: MOCK_SWITCH_TYPE,
      fields: { hostname: "mock", username: "mock", password: "mock" },
      ports: new Map(s.ports.map((p) => [p, null])),
    });
  }
  let generated = 0;
  for (const n of fixture.nodes) {
    if (n.project !== null) needProject(n.project);
    const nics = new Map<string, NicState>();
    for (const nic of n.nics) {
      let port: { switch: string; port: string } | null = null;
      if (nic.cable === undefined) {
        let sw = state.switches.get("sw0");
        if (!sw) {
          sw = { name: "sw0", type: MOCK_SWITCH_TYPE, fields: {}, ports: new Map() };
          state.switches.set("sw0", sw);
        }
        let name: string;
        do name = `gi1/0/${++generated}`;
        while (sw.ports.has(name));
        sw.ports.set(name, { node: n.name, nic: nic.label });
        port = { switch: "sw0", port: name };
      } else if (nic.cable !== false) {
        const sw = state.switches.get(nic.cable.switch) ?? bad(`unknown switch ${nic.cable.switch}`);
        if (sw.ports.get(nic.cable.port)) bad(`port ${nic.cable.port} is cabled twice`);
        sw.ports.set(nic.cable.port, { node: n.name, nic: nic.label });
        port = { ...nic.cable };
      }
      nics.set(nic.label, {
        label: nic.label,
        macaddr: nic.macaddr,
        port,
        networks: new Map(),
        duplicates: [],
        action: null,
      });
    }
    state.nodes.set(n.name, {
      name: n.name,
      project: n.project,
      metadata: new Map(Object.entries(n.metadata).map(([k, v]) => [k, JSON.stringify(v)])),
      obmd: {
        uri: n.obmd?.uri ?? `${baseObmdUri}/node/${n.name}`,
        adminToken: n.obmd?.adminToken ?? "admin-token",
      },
      obmEnabled: n.obmEnabled,
      obmToken: n.obmEnabled ? "0".repeat(32) : null,
      nics,
    });
  }
  for (const net of fixture.networks) {
    if (net.owner !== "admin") needProject(net.owner);
    for (const p of net.access) needProject(p);
    state.networks.set(net.name, {
      name: net.name,
      owner: net.owner === "admin" ? null : net.owner,
      access: new Set(net.access),
      networkId: net.netId ?? allocateVlan(state),
      allocated: net.netId === undefined,
    });
  }
  for (const a of fixture.attachments) {
    const nic = state.nodes.get(a.node)?.nics.get(a.nic) ?? bad(`unknown NIC ${a.node}/${a.nic}`);
    if (!state.networks.has(a.network)) bad(`unknown network ${a.network}`);
    nic.networks.set(a.channel, a.network);
  }
}
