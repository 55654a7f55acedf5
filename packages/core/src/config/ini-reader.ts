import { parse } from "ini";
import { BmiError } from "../errors/index.js";

/**
 * A parsed INI file with Python 2 `SafeConfigParser` semantics, the parser the original BMI used:
 * section names are case-sensitive, option names are lower-cased, `key = value` and `key: value`
 * both work, whole-line comments start with `#` or `;`, an inline comment is `;` after whitespace
 * (a `#` inside a value is part of it), the last of two equal keys wins, `[DEFAULT]` supplies
 * options to every section, and `%(name)s` is interpolated on read with `%%` for a literal `%`.
 *
 * Differences, on purpose: a continuation line (Python would join it with a newline) is an error,
 * because no BMI value may contain a newline; a value wrapped in quotes is unquoted (the `ini`
 * package's JSON-string rule), which is the way to write a value that contains ` ;`.
 */
export interface IniDocument {
  /** Raw (uninterpolated) values by section, then by lower-cased key, in file order. */
  sections: Map<string, Map<string, string>>;
  defaults: Map<string, string>;
  /**
   * A warning per repeated section or key, naming lines, never values. Python 2's parser took
   * them silently (a repeated section merges, the last key wins), and so do we, so configs that
   * loaded under the original still load; a typo that shadows a setting is visible.
   */
  duplicates: string[];
}

export const DEFAULT_SECTION = "DEFAULT";

/** Maximum nesting of `%(name)s` references, as in Python's ConfigParser. */
const MAX_INTERPOLATION_DEPTH = 10;

function syntaxError(message: string, details: Record<string, unknown>): BmiError {
  return new BmiError("invalid_input", message, { subsystem: "config", details });
}

/**
 * Rewrites one value so that the `ini` package keeps it literally: strips a Python inline comment
 * and escapes `\`, `;` and `#`, which `ini` would otherwise treat as escapes or comment starts.
 */
function literalValue(raw: string): string {
  const trimmed = raw.trim();
  if (isQuoted(trimmed)) return trimmed;
  const commentAt = trimmed.search(/\s;/);
  const value = commentAt >= 0 ? trimmed.slice(0, commentAt).trimEnd() : trimmed;
  return value.replace(/[\\;#]/g, (c) => `\\${c}`);
}

const isQuoted = (value: string): boolean =>
  value.length > 1 &&
  ((value.startsWith('"') && value.endsWith('"')) || (value.startsWith("'") && value.endsWith("'")));

/**
 * Reads INI text. Structural problems a Python parser would also reject (an option before any
 * section, a line that is neither a section, an option nor a comment) throw `invalid_input`
 * with the line number; values are never echoed, since some are secrets.
 */
export function readIni(text: string, source: string): IniDocument {
  const lines = text.split(/\r\n|\r|\n/);
  const normalised: string[] = [];
  let section: string | null = null;
  let lastKey: string | null = null;
  const duplicates: string[] = [];
  const sectionLines = new Map<string, number>();
  const keyLines = new Map<string, number>();

  lines.forEach((line, index) => {
    const lineNo = index + 1;
    if (/^\s*$/.test(line) || /^[#;]/.test(line) || /^rem(\s|$)/i.test(line)) {
      normalised.push("");
      return;
    }
    if (/^\s/.test(line)) {
      if (/^\s+[#;]/.test(line)) {
        normalised.push("");
        return;
      }
      const where = section !== null && lastKey !== null ? `[${section}] ${lastKey}` : `line ${lineNo}`;
      throw syntaxError(
        `invalid ${where}: line ${lineNo} of ${source} is indented, which continues the previous value on a new line; multi-line values are not allowed`,
        { file: source, line: lineNo, section, key: lastKey },
      );
    }
    const header = /^\[([^\]]+)\]/.exec(line);
    if (header) {
      section = (header[1] ?? "").trim();
      lastKey = null;
      const seen = sectionLines.get(section);
      if (seen !== undefined) {
        duplicates.push(
          `[${section}] appears twice in ${source} (lines ${seen} and ${lineNo}); read as one section`,
        );
      } else sectionLines.set(section, lineNo);
      // Escape dots so `ini` keeps `[a.b]` one flat section, as Python does.
      normalised.push(`[${section.replace(/[.;#]/g, (c) => `\\${c}`)}]`);
      return;
    }
    const option = /^([^:=]*[^:=\s])\s*[:=](.*)$/.exec(line);
    if (!option) {
      throw syntaxError(
        `line ${lineNo} of ${source} is not a [section], a 'key = value' option or a comment`,
        {
          file: source,
          line: lineNo,
          section,
        },
      );
    }
    const key = (option[1] ?? "").trim().toLowerCase();
    if (section === null) {
      throw syntaxError(`line ${lineNo} of ${source}: option '${key}' comes before any [section] header`, {
        file: source,
        line: lineNo,
        key,
      });
    }
    lastKey = key;
    const seenKey = keyLines.get(`${section}\0${key}`);
    if (seenKey !== undefined) {
      duplicates.push(
        `[${section}] ${key} is set twice in ${source} (lines ${seenKey} and ${lineNo}); the later one is used`,
      );
    }
    keyLines.set(`${section}\0${key}`, lineNo);
    normalised.push(`${key.replace(/[\\;#]/g, (c) => `\\${c}`)} = ${literalValue(option[2] ?? "")}`);
  });

  const parsed = parse(normalised.join("\n"), { bracketedArray: false }) as Record<string, unknown>;
  const sections = new Map<string, Map<string, string>>();
  let defaults = new Map<string, string>();
  for (const [name, body] of Object.entries(parsed)) {
    if (typeof body !== "object" || body === null || Array.isArray(body)) continue;
    const values = new Map<string, string>();
    for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
      // `ini` turns true/false/null into JSON values and repeated keys into arrays (last one wins).
      const last = Array.isArray(value) ? value[value.length - 1] : value;
      values.set(key, last === null ? "null" : String(last));
    }
    if (name === DEFAULT_SECTION) defaults = values;
    else sections.set(name, values);
  }
  return { sections, defaults, duplicates };
}

/** The raw value of an option: the section's own, else `[DEFAULT]`'s (Python's lookup order). */
export function rawOption(doc: IniDocument, section: string, key: string): string | undefined {
  return doc.sections.get(section)?.get(key) ?? doc.defaults.get(key);
}

/**
 * Expands `%(name)s` references like Python 2's `SafeConfigParser.get()`: names are looked up in
 * the same section, then `[DEFAULT]`; `%%` is a literal `%`; any other `%` is an error. Error
 * messages name the section and key, never the value (it may be a password).
 */
export function interpolate(doc: IniDocument, section: string, key: string, sectionAlias = section): string {
  const raw = rawOption(doc, section, key);
  if (raw === undefined) {
    throw syntaxError(`missing [${sectionAlias}] ${key}`, { section: sectionAlias, key });
  }
  const fail = (why: string): never => {
    throw syntaxError(`invalid [${sectionAlias}] ${key}: ${why}`, { section: sectionAlias, key });
  };
  const expand = (value: string, depth: number): string => {
    if (depth > MAX_INTERPOLATION_DEPTH) {
      fail(`%(name)s references nest deeper than ${MAX_INTERPOLATION_DEPTH} levels (a reference loop?)`);
    }
    let out = "";
    let rest = value;
    while (rest.length > 0) {
      const at = rest.indexOf("%");
      if (at < 0) return out + rest;
      out += rest.slice(0, at);
      rest = rest.slice(at);
      const next = rest.charAt(1);
      if (next === "%") {
        out += "%";
        rest = rest.slice(2);
      } else if (next === "(") {
        const ref = /^%\(([^)]+)\)s/.exec(rest);
        if (!ref) return fail("bad interpolation reference: '%(' must be followed by 'name)s'");
        const name = (ref[1] ?? "").toLowerCase();
        rest = rest.slice(ref[0].length);
        const target = rawOption(doc, section, name);
        if (target === undefined) {
          return fail(`refers to %(${name})s, which is not an option of [${sectionAlias}] or [DEFAULT]`);
        }
        out += target.includes("%") ? expand(target, depth + 1) : target;
      } else {
        return fail("a '%' must be followed by '%' or '(' (write '%%' for a literal '%')");
      }
    }
    return out;
  };
  return expand(raw, 1);
}
