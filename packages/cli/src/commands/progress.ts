import type { Bmi, BmiEvent } from "@bmi/core";
import { Listr, ListrLogger, type ListrTask, ProcessOutput } from "listr2";
import type { CliContext, Globals } from "./context.js";

/** A task's live view: the title and the line under it. */
export interface TaskView {
  title: string;
  output: string;
}

/** What an event says to people, or nothing for the events a view skips. */
export function describeEvent(event: BmiEvent): string | undefined {
  if (event.type === "step:started") return `${event.step}…`;
  if (event.type === "step:finished") return `${event.step} (${Math.round(event.durationMs)} ms)`;
  if (event.type === "step:undone") return `undone: ${event.step}`;
  if (event.type === "boot:stage")
    return `${event.node}: ${event.stage} after ${(event.atMs / 1000).toFixed(1)} s`;
  return undefined;
}

/**
 * Runs tasks with listr2 on stderr (so stdout stays the result), or plainly when progress is off
 * (not a terminal, or machine output). Every task runs; the first failure is rethrown as it was.
 */
export async function runTasks(
  ctx: CliContext,
  g: Globals,
  tasks: { title: string; run: (view: TaskView) => Promise<void> }[],
  options: { concurrent?: boolean } = {},
): Promise<void> {
  const failures: unknown[] = [];
  const settle = async (task: (typeof tasks)[number], view: TaskView) => {
    try {
      await task.run(view);
    } catch (error) {
      failures.push(error);
      throw error;
    }
  };
  if (!ctx.progress(g)) {
    const plain = (t: (typeof tasks)[number]) => settle(t, { title: t.title, output: "" }).catch(() => {});
    if (options.concurrent) await Promise.all(tasks.map(plain));
    else for (const task of tasks) await plain(task);
  } else {
    const listed: ListrTask[] = tasks.map((t) => ({ title: t.title, task: (_ctx, view) => settle(t, view) }));
    const output = new ProcessOutput(ctx.stderr as NodeJS.WriteStream, ctx.stderr as NodeJS.WriteStream);
    await new Listr(listed, {
      concurrent: options.concurrent === true,
      exitOnError: false,
      // The live renderer where listr2 allows it (stdout a terminal too), else one line per change.
      renderer: "default",
      fallbackRenderer: "simple",
      rendererOptions: { logger: new ListrLogger({ processOutput: output }), collapseErrors: false },
      fallbackRendererOptions: { logger: new ListrLogger({ processOutput: output }) },
    })
      .run()
      .catch(() => {});
  }
  if (failures.length > 0) throw failures[0];
}

/**
 * Runs one operation with a live view of its steps (and of a node's boot stages) drawn from the
 * facade's events, and resolves with its result.
 */
export async function withProgress<T>(
  ctx: CliContext,
  g: Globals,
  bmi: Bmi,
  title: string,
  work: () => Promise<T>,
  doneTitle?: (result: T) => string,
): Promise<T> {
  let result: T | undefined;
  await runTasks(ctx, g, [
    {
      title,
      run: async (view) => {
        const off = bmi.on((event) => {
          const line = describeEvent(event);
          if (line) view.output = line;
        });
        try {
          result = await work();
          if (doneTitle) view.title = doneTitle(result);
        } finally {
          off();
        }
      },
    },
  ]);
  return result as T;
}
