/** The tests' throwaway user and root: shared with the benchmarks and the demo (src/sim/lab.ts). */
export { createLab, runAs, type Lab } from '../../src/sim/lab.js';
