/** Options every driver call accepts. */
export interface CallOptions {
  /** Cancels the call; a running external command is killed. */
  signal?: AbortSignal;
}
