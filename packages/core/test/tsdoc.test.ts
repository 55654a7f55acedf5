import { readFileSync } from "node:fs";
import ts from "typescript";
import { describe, expect, it } from "vitest";

// The API docs (TypeDoc) are built from these comments: a facade method added without its
// summary, its error codes or an example fails here rather than shipping undocumented.

const sourceOf = (path: string) => {
  const file = new URL(path, import.meta.url);
  return ts.createSourceFile(file.pathname, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, true);
};

/** The members of the `Bmi` interface with their TSDoc: summary, and the text of each tag by name. */
function facadeMembers() {
  const source = sourceOf("../src/ops/bmi.ts");
  const bmi = source.statements.find(
    (s): s is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(s) && s.name.text === "Bmi",
  );
  if (!bmi) throw new Error("interface Bmi not found in src/ops/bmi.ts");
  return bmi.members.map((member) => {
    const docs = ts.getJSDocCommentsAndTags(member).filter(ts.isJSDoc);
    const tags = docs.flatMap((doc) => doc.tags ?? []);
    const textOf = (name: string) =>
      tags
        .filter((tag) => tag.tagName.text === name)
        .map((tag) => (ts.getTextOfJSDocComment(tag.comment) ?? "").trim());
    return {
      name: member.name?.getText(source) ?? "(unnamed)",
      isMethod: ts.isMethodSignature(member),
      parameters: ts.isMethodSignature(member) ? member.parameters.map((p) => p.name.getText(source)) : [],
      summary: docs
        .map((doc) => ts.getTextOfJSDocComment(doc.comment) ?? "")
        .join("\n")
        .trim(),
      throws: textOf("throws"),
      examples: textOf("example"),
    };
  });
}

/** The codes of the `ErrorCode` union, read from its declaration. */
function errorCodes(): Set<string> {
  const source = sourceOf("../src/errors/bmi-error.ts");
  const alias = source.statements.find(
    (s): s is ts.TypeAliasDeclaration => ts.isTypeAliasDeclaration(s) && s.name.text === "ErrorCode",
  );
  if (!alias || !ts.isUnionTypeNode(alias.type)) throw new Error("type ErrorCode not found");
  return new Set(
    alias.type.types.flatMap((t) =>
      ts.isLiteralTypeNode(t) && ts.isStringLiteral(t.literal) ? [t.literal.text] : [],
    ),
  );
}

/** Methods that need no `@throws`, and why. Anything else must list what it can reject with. */
const CANNOT_FAIL: Record<string, string> = { on: "adding a listener to a set cannot fail" };
/** Methods whose `@throws` names no code, and why. */
const RETHROWS_AS_IS: Record<string, string> = {
  close: "a driver's own close() failure is rethrown as it was raised, whatever it is",
};

describe("TSDoc of the Bmi facade", () => {
  const members = facadeMembers();
  const codes = errorCodes();

  it("finds the facade's members and the error codes", () => {
    expect(members.length).toBeGreaterThan(30);
    expect(codes).toContain("invalid_input");
    for (const name of [...Object.keys(CANNOT_FAIL), ...Object.keys(RETHROWS_AS_IS)]) {
      expect(members.map((m) => m.name)).toContain(name);
    }
  });

  it.each(members.map((m) => [m.name, m] as const))("%s has a summary and an example using it", (name, m) => {
    expect(m.summary.length, `${name}: summary`).toBeGreaterThan(10);
    expect(m.examples.length, `${name}: @example`).toBeGreaterThan(0);
    expect(m.examples.join("\n"), `${name}: the example calls it`).toContain(`bmi.${name}`);
  });

  it.each(members.filter((m) => m.isMethod && !(m.name in CANNOT_FAIL)).map((m) => [m.name, m] as const))(
    "%s has one @throws per error code, each an ErrorCode",
    (name, m) => {
      expect(m.throws.length, `${name}: @throws`).toBeGreaterThan(0);
      if (name in RETHROWS_AS_IS) return;
      const listed = m.throws.map((text) => /^`([a-z_]+)`\s+\S/.exec(text)?.[1]);
      for (const [index, code] of listed.entries()) {
        expect(code && codes.has(code), `${name}: "@throws ${m.throws[index]}" starts with a code`).toBe(
          true,
        );
      }
      expect(new Set(listed).size, `${name}: each code once`).toBe(listed.length);
      if (m.parameters.some((p) => p === "input" || p === "inputs"))
        expect(listed).toContain("invalid_input");
    },
  );
});
