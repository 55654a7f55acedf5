import { describe, expect, it } from "vitest";
import { BmiError } from "../src/index.js";
import { setup, thrown } from "./ops-helpers.js";

// Issue 19 points 3 and 8, on the in-memory drivers (the HIL server versions are in
// packages/driver-hil/test/bmi-hil.test.ts).

const kinds = (report: { drift: { kind: string; subject: string }[] }) =>
  report.drift.map((d) => [d.kind, d.subject]).sort();

describe("provision checks the NIC every time (issue 19 point 8)", () => {
  it("re-provisioning with the current disk checks ownership and the NIC, not only the record", async () => {
    const { bmi, isolation } = await setup();
    await bmi.provision({ project: "p1", node: "n2", disk: "d2", image: "golden", nic: "eth1" });
    // Same disk, same NIC, or no NIC named: success without change.
    expect((await bmi.provision({ project: "p1", node: "n2", disk: "d2", nic: "eth1" })).nic).toBe("eth1");
    expect((await bmi.provision({ project: "p1", node: "n2", disk: "d2" })).nic).toBe("eth1");
    // A NIC the node does not have: not found, as on a first provision.
    const missing = await thrown(() => bmi.provision({ project: "p1", node: "n2", disk: "d2", nic: "eth9" }));
    expect(missing).toMatchObject({ code: "not_found", message: "NIC eth9 not found on node n2" });
    // Another NIC of the node: the record says otherwise, so it is a conflict, not a silent success.
    const other = await thrown(() => bmi.provision({ project: "p1", node: "n2", disk: "d2", nic: "eth0" }));
    expect(other.code).toBe("conflict");
    expect(other.message).toMatch(/boots from NIC eth1, not eth0; deprovision it to change the NIC/);
    // And a node HIL gave away meanwhile is refused, not answered from the record.
    isolation.setOwner("n2", "p2");
    expect((await thrown(() => bmi.provision({ project: "p1", node: "n2", disk: "d2" }))).code).toBe(
      "forbidden",
    );
  });
});

describe("reconcile: the provisioning network in HIL and failed operations (issue 19 point 3)", () => {
  it("reports a node on the provisioning network without a record as unknown; detaches it only when named", async () => {
    const { bmi, isolation } = await setup();
    await bmi.createProject({ name: "bmi_infra" });
    await isolation.attach({ node: "n1", nic: "eth0", network: "prov" }); // by hand, or by another BMI
    const report = await bmi.reconcile();
    expect(kinds(report)).toEqual([["unknown", "n1"]]);
    expect(report.drift[0]?.detail).toMatch(/n1 \(NIC eth0\) is on prov without a provisioning record/);
    await bmi.reconcile({ repair: true });
    expect(isolation.allAttachments).toHaveLength(1);
    const named = await bmi.reconcile({ repair: true, remove: ["n1"] });
    expect(named.repaired.map((d) => d.subject)).toEqual(["n1"]);
    expect(isolation.allAttachments).toEqual([]);
  });

  it("a failed provision whose detach undo failed: reported, detached on repair, closed once it worked", async () => {
    const env = await setup();
    const { bmi, isolation, store } = env;
    await bmi.createProject({ name: "bmi_infra" });
    // The last step fails; its undo chain reaches the detach, which HIL refuses for a while.
    env.setHook(({ step }) => {
      if (step === "record provisioning")
        throw new BmiError("internal", "injected failure at the record step");
    });
    const busy = new BmiError("busy", "HIL: a networking operation is already active on the nic", {
      subsystem: "isolation",
    });
    isolation.failNext("detach", busy, 1);
    expect(
      (await thrown(() => bmi.provision({ project: "p1", node: "n1", disk: "d1", image: "golden" }))).code,
    ).toBe("internal");
    env.setHook(undefined);
    expect(
      (await store.journal.list()).some(
        (j) => j.status === "undo_failed" && j.step === "attach provisioning network",
      ),
    ).toBe(true);
    expect(isolation.allAttachments).toHaveLength(1);

    const report = await bmi.reconcile();
    const incomplete = report.drift.find((d) => d.kind === "incomplete_undo");
    expect(incomplete?.detail).toMatch(
      /provision of node n1 failed and its undo did not complete: attach provisioning network \(failed: HIL: a networking operation/,
    );
    expect(report.drift.find((d) => d.kind === "orphan_attachment")?.subject).toBe("n1");

    // While the detach still fails, the operation stays open.
    isolation.failNext("detach", busy, 1);
    const first = await bmi.reconcile({ repair: true });
    expect(first.failed.map((f) => f.drift.kind).sort()).toEqual(["incomplete_undo", "orphan_attachment"]);
    // Each failure carries its error's code, so a script can tell "run again later" from "needs a human".
    expect(first.failed.find((f) => f.drift.kind === "orphan_attachment")).toMatchObject({
      code: "busy",
      retryable: true,
      error: expect.stringMatching(/networking operation/),
    });
    const second = await bmi.reconcile({ repair: true });
    expect(second.failed).toEqual([]);
    expect(second.repaired.map((d) => d.kind)).toEqual(["orphan_attachment", "incomplete_undo"]);
    expect(isolation.allAttachments).toEqual([]);
    expect((await bmi.reconcile()).drift).toEqual([]);
  });
});
