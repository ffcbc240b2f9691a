/**
 * `node loadgen/dist/cpu-profile-main.js <file.cpuprofile> [top]`: prints a `node --cpu-prof`
 * profile's self time by function and by area (package, node internals, workspace, GC).
 */
import Table from 'cli-table3';
import { summarizeCpuProfile } from './cpu-profile.js';

const [file, top] = process.argv.slice(2);
if (!file) {
  process.stderr.write('usage: node loadgen/dist/cpu-profile-main.js <file.cpuprofile> [top]\n');
  process.exit(2);
}
const s = summarizeCpuProfile(file, Number(top ?? 25));
console.log(`${s.totalMs.toFixed(0)} ms sampled, idle ${s.idlePercent.toFixed(1)}%; percent of the busy samples`);
const t = new Table({ head: ['self time: function', '%', 'area', '%'] });
for (let i = 0; i < Math.max(s.functions.length, s.areas.length); i++) {
  const f = s.functions[i];
  const a = s.areas[i];
  t.push([f?.name ?? '', f ? f.percent.toFixed(1) : '', a?.name ?? '', a ? a.percent.toFixed(1) : '']);
}
console.log(t.toString());
