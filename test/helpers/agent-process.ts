/** The agent as a real `runner-warden run` process: one implementation, kept beside the benches that also kill it (bench/ may not import test/). */
export * from '../../bench/lib/agent-process.js';
