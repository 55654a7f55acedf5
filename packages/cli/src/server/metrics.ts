import type { Bmi, BmiEvent } from "@bmi/core";
import { Counter, collectDefaultMetrics, Histogram, Registry } from "prom-client";

export interface Metrics {
  contentType: string;
  text(): Promise<string>;
  /** Stops listening to the facade's events. */
  stop(): void;
}

/**
 * Prometheus metrics from the facade's progress events: operations by name and result, and
 * step durations. One registry per server, so two servers in one process do not share counts.
 */
export function createMetrics(bmi: Bmi): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "bmi_" });
  const operations = new Counter({
    name: "bmi_operations_total",
    help: "Operations run, by operation name and result (ok or the error code)",
    labelNames: ["operation", "result"] as const,
    registers: [registry],
  });
  const operationSeconds = new Histogram({
    name: "bmi_operation_duration_seconds",
    help: "Duration of operations, by operation name and result",
    labelNames: ["operation", "result"] as const,
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
    registers: [registry],
  });
  const stepSeconds = new Histogram({
    name: "bmi_step_duration_seconds",
    help: "Duration of operation steps, by operation, step and result (ok, failed, undone)",
    labelNames: ["operation", "step", "result"] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  const record = (event: BmiEvent) => {
    switch (event.type) {
      case "operation:finished":
      case "operation:failed": {
        const result = event.type === "operation:finished" ? "ok" : event.error.code;
        operations.inc({ operation: event.operation, result });
        operationSeconds.observe({ operation: event.operation, result }, event.durationMs / 1000);
        return;
      }
      case "step:finished":
      case "step:failed":
      case "step:undone": {
        const result =
          event.type === "step:finished" ? "ok" : event.type === "step:failed" ? "failed" : "undone";
        stepSeconds.observe(
          { operation: event.operation, step: event.step, result },
          event.durationMs / 1000,
        );
        return;
      }
      default:
        return;
    }
  };
  const stop = bmi.on(record);
  return { contentType: registry.contentType, text: () => registry.metrics(), stop };
}
