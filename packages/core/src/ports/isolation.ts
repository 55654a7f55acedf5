import type { NodeInfo } from "../domain/model.js";
import type { CallOptions } from "./common.js";

export interface IsolationCapabilities {
  /** Can attach/detach NICs to networks (HIL v0.3+). Without it, BMI only checks ownership. */
  networks: boolean;
}

export interface NetworkAttachment {
  node: string;
  nic: string;
  network: string;
  /** e.g. `vlan/native`. */
  channel?: string;
}

/**
 * The isolation service (HIL): who owns a node, its NICs, and its network attachments.
 * Errors: `not_found` (node, NIC, network), `forbidden` (node not in the project),
 * `unauthenticated`, `busy` (pending networking action; retryable), `unavailable`, `timeout`,
 * with subsystem `isolation`.
 */
export interface IsolationDriver {
  readonly name: string;
  readonly capabilities: IsolationCapabilities;

  node(node: string, options?: CallOptions): Promise<NodeInfo>;
  /** Throws `forbidden` unless `project` owns `node` (SEC-2: free and foreign nodes are refused). */
  authorize(project: string, node: string, options?: CallOptions): Promise<NodeInfo>;
  /** Connects the NIC to the network and waits until the change is applied. Idempotent. */
  attach(attachment: NetworkAttachment, options?: CallOptions): Promise<void>;
  /** Detaches and waits. Detaching a network that is not attached is fine. */
  detach(attachment: NetworkAttachment, options?: CallOptions): Promise<void>;
  /** Current attachments of a node's NICs. */
  attachments(node: string, options?: CallOptions): Promise<NetworkAttachment[]>;
  /**
   * Every node attached to `network` (HIL `GET /network/<net>/attachments`), so reconcile() can
   * find nodes on the provisioning network that BMI has no record of. An account that may not
   * list the whole network lists it per project in `projects` (HIL's `?project=`), skipping those
   * it may not see.
   */
  networkAttachments?(
    network: string,
    options?: CallOptions & { projects?: readonly string[] },
  ): Promise<NetworkAttachment[]>;
}
