const MASK = "[REDACTED]";

/** Replaces every occurrence of each secret (longer than 3 chars, so we don't mask noise) in `text`. */
export function redact(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret && secret.length > 3) out = out.split(secret).join(MASK);
  }
  return out;
}
