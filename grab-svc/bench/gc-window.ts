/**
 * Preloaded into the grab-svc a benchmark spawns (`node --import gc-window.js main.js`), so that
 * grab-svc itself carries no measuring code: each SIGUSR2 opens, then closes, a window over which
 * V8's GC profiler records every collection; on close it prints one JSON line with the window's
 * number, its longest pause and the bytes V8 allocated in it. Outside a window nothing is hooked,
 * and GCs are only observed (one callback each), never requests.
 */
import { GCProfiler, getHeapStatistics } from 'node:v8';

/** What a window reports; the bench parses the line by its `gcWindow` number. */
export interface GcWindowReport {
  gcWindow: number;
  gcs: number;
  /** The longest stop-the-world pause (GC prologue to epilogue on the main thread), ms. */
  pauseMaxMs: number;
  pauseTotalMs: number;
  /** Heap growth plus what every GC freed: the bytes V8 allocated in the window (the same sum as `--trace-gc-nvp`'s "allocated"). */
  allocatedBytes: number;
}

let windows = 0;
let open: { profiler: GCProfiler; usedAtStart: number } | undefined;

process.on('SIGUSR2', () => {
  if (!open) {
    windows++;
    const profiler = new GCProfiler();
    open = { profiler, usedAtStart: getHeapStatistics().used_heap_size };
    profiler.start();
    process.stdout.write(`${JSON.stringify({ gcWindow: windows, state: 'open' })}\n`);
    return;
  }
  const { profiler, usedAtStart } = open;
  open = undefined;
  const stats = profiler.stop()?.statistics ?? [];
  let freed = 0;
  let maxUs = 0;
  let totalUs = 0;
  for (const s of stats) {
    freed += s.beforeGC.heapStatistics.usedHeapSize - s.afterGC.heapStatistics.usedHeapSize;
    maxUs = Math.max(maxUs, s.cost);
    totalUs += s.cost;
  }
  const report: GcWindowReport = {
    gcWindow: windows,
    gcs: stats.length,
    pauseMaxMs: maxUs / 1000,
    pauseTotalMs: totalUs / 1000,
    allocatedBytes: getHeapStatistics().used_heap_size - usedAtStart + freed,
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
});
