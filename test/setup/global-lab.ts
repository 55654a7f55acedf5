// Starts the shared lab for the integration project. Filled in by the driver-ceph work.
export default async function setup(): Promise<void> {}
