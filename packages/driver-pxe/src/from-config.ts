import type { BmiConfig } from "@bmi/core";
import type { PxeBootOptions } from "./pxe-boot.js";

/**
 * The driver's options from a loaded `bmi_config.cfg` (`[tftp]`). The original wrote node scripts
 * into `ipxe_path` and named them relative to the TFTP root, so `ipxe_path` is the root.
 */
export function pxeOptionsFromConfig(config: BmiConfig): PxeBootOptions {
  const { tftp } = config;
  return {
    root: tftp.ipxe_path,
    pxelinuxPath: tftp.pxelinux_path,
    ipxeKernel: tftp.ipxe_kernel,
    menuTimeout: tftp.menu_timeout,
    // `any`: plain `dhcp`, which tries every NIC (one-NIC nodes and VMs); `netN` pins one NIC.
    bootNic: tftp.boot_nic === "any" ? null : tftp.boot_nic,
    ...(tftp.dhcp_hosts_path === null ? {} : { dhcpHostsPath: tftp.dhcp_hosts_path }),
    ...(tftp.dnsmasq_pid_file === null ? {} : { dnsmasqPidFile: tftp.dnsmasq_pid_file }),
    ...(tftp.node_addresses === null
      ? {}
      : { nodeAddresses: `${tftp.node_addresses.first}-${tftp.node_addresses.last}` }),
  };
}
