import { z } from "zod";

/**
 * An inclusive range of IPv4 host addresses inside one /24, from which nodes get a fixed
 * provisioning address each (`[tftp] node_addresses = 10.247.0.10-10.247.0.99`).
 */
export interface AddressRange {
  first: string;
  last: string;
}

const OCTET = "(25[0-5]|2[0-4]\\d|1?\\d?\\d)";
const IPV4_HOST = new RegExp(`^${OCTET}(\\.${OCTET}){3}$`);

const octets = (ip: string): number[] => ip.split(".").map(Number);

/** `<first>-<last>`: both IPv4, in one /24 (one provisioning subnet), first ≤ last, no .0 or .255. */
export const AddressRangeSchema = z.string().transform((value, ctx): AddressRange => {
  const [first = "", last = "", ...rest] = value.split("-").map((part) => part.trim());
  const fail = (message: string) => {
    ctx.addIssue({ code: "custom", message });
    return z.NEVER;
  };
  if (rest.length > 0 || !IPV4_HOST.test(first) || !IPV4_HOST.test(last)) {
    return fail("must be <first>-<last>, two IPv4 addresses (e.g. 10.247.0.10-10.247.0.99)");
  }
  const [a, b] = [octets(first), octets(last)];
  if (a.slice(0, 3).join(".") !== b.slice(0, 3).join(".")) {
    return fail(
      "must lie inside one /24 (the provisioning subnet): both ends share their first three numbers",
    );
  }
  const [lo = 0, hi = 0] = [a[3], b[3]];
  if (lo > hi) return fail("the first address must not come after the last");
  if (lo === 0 || hi === 255) return fail("must not include the subnet's .0 or .255 (network, broadcast)");
  return { first, last };
});

/** Every address of the range, lowest first. */
export function addressesIn(range: AddressRange): string[] {
  const [a, b] = [octets(range.first), octets(range.last)];
  const prefix = a.slice(0, 3).join(".");
  const out: string[] = [];
  for (let host = a[3] ?? 0; host <= (b[3] ?? 0); host++) out.push(`${prefix}.${host}`);
  return out;
}

/** Whether `address` is one of the range's. */
export const inAddressRange = (range: AddressRange, address: string): boolean =>
  addressesIn(range).includes(address);
