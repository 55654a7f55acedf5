import { describe, expect, it } from "vitest";
import { classifyLibrbdFailure, classifyRbdFailure, librbdError } from "../src/index.js";

describe("librbd errno → the same reasons the rbd CLI gives", () => {
  // Each row: the librbd call, its errno, and the rbd CLI's exit code + stderr for the same case (spec §9).
  it.each([
    ["remove", 16, "rbd: error: image still has watchers"],
    ["remove", 39, "rbd: image has snapshots - these must be deleted with 'rbd snap purge'"],
    ["snap_remove", 16, "rbd: snapshot 's1' is protected from removal."],
    ["snap_unprotect", 16, "rbd: cannot unprotect: at least 1 child(ren) ... (16) Device or resource busy"],
    ["snap_unprotect", 22, "rbd: unprotecting snap failed: snap is already unprotected"],
    ["snap_protect", 16, "rbd: protecting snap failed: snap is already protected"],
    ["clone", 22, "rbd: clone error: parent snapshot must be protected"],
    ["flatten", 22, "rbd: flatten error: image has no parent"],
    ["other", 2, "rbd: error opening image c0: (2) No such file or directory"],
    ["other", 17, "rbd: create error: (17) File exists"],
    ["other", 110, "rbd: (110) Connection timed out"],
    ["connect", 13, "rbd: couldn't connect to the cluster! (13) Permission denied"],
    ["connect", 110, "rbd: couldn't connect to the cluster! authenticate timed out after 5"],
  ] as const)("%s errno %i", (step, errno, stderr) => {
    const cli = classifyRbdFailure(errno, stderr);
    expect(classifyLibrbdFailure(step, errno)).toEqual(cli);
  });

  it("keeps the errno and the reason in details, with subsystem storage", () => {
    const error = librbdError("remove", 16, "rbd_remove bmi/c0", { image: "c0" });
    expect(error).toMatchObject({ code: "busy", subsystem: "storage" });
    expect(error.details).toMatchObject({ reason: "watchers", errno: 16, image: "c0" });
    expect(error.message).toContain("bmi/c0");
  });

  it("maps an unknown connect errno to unavailable, not internal", () => {
    expect(classifyLibrbdFailure("connect", 5)).toMatchObject({ code: "unavailable", reason: "connect" });
  });
});
