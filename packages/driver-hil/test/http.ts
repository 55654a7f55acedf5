import { request } from "node:http";

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: () => unknown;
}

/** A raw HTTP call (node:http, so a GET may carry a body and nothing is added behind our back). */
export function raw(
  base: string,
  method: string,
  path: string,
  init: {
    body?: string | object;
    auth?: { username: string; password: string };
    headers?: Record<string, string>;
  } = {},
): Promise<RawResponse> {
  const url = new URL(path, base);
  const body =
    init.body === undefined
      ? undefined
      : typeof init.body === "string"
        ? init.body
        : JSON.stringify(init.body);
  const headers: Record<string, string> = { ...init.headers };
  if (body !== undefined) headers["Content-Length"] = String(Buffer.byteLength(body));
  if (body !== undefined && !("Content-Type" in headers)) headers["Content-Type"] = "application/json";
  if (init.auth) {
    headers.Authorization = `Basic ${Buffer.from(`${init.auth.username}:${init.auth.password}`).toString("base64")}`;
  }
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) });
      });
      res.on("error", reject);
    });
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}
