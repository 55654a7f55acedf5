#!/usr/bin/env node
// librbd calls (the default storage back end) each hold a libuv worker thread until they return;
// with libuv's default of 4, a few calls stuck on a dead cluster would stall file I/O as well.
// libuv reads this when its pool starts (the first async I/O), so it is set before anything loads.
process.env.UV_THREADPOOL_SIZE ??= "16";
const { run } = await import("./program.js");
process.exitCode = await run(process.argv.slice(2));
