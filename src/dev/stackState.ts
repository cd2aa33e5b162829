/**
 * What `npm start` is running, kept in `.data/dev-stack.json` so that the next `npm start`
 * can tell a live stack (another `npm start` still running: refuse) from what a killed one left
 * behind (stop it, then start on the same ports with the same data).
 *
 * Shape: `{ owner: pid, temporal?: { pid, port, uiPort }, postgres?: { pid, port, dataDir } }`.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { commandLine, isAlive, stopPid } from './processes';

export interface StackState {
  owner: number;
  temporal?: { pid: number; port: number; uiPort: number };
  postgres?: { pid: number; port: number; dataDir: string };
}

/** Writes the stack file as parts start, and removes it after a clean stop. */
export class StackRecorder {
  private state: StackState;

  constructor(private readonly file: string) {
    this.state = { owner: process.pid };
  }

  /** Records a part of the stack once it runs. */
  record(part: Omit<StackState, 'owner'>): void {
    this.state = { ...this.state, ...part };
    mkdirSync(path.dirname(this.file), { recursive: true });
    writeFileSync(this.file, JSON.stringify(this.state, null, 2) + '\n');
  }

  clear(): void {
    rmSync(this.file, { force: true });
  }
}

/** Thrown when another `npm start` of this checkout is still running. */
export class StackInUseError extends Error {
  override name = 'StackInUseError';
}

/**
 * Reads what an earlier `npm start` recorded. If its owner still runs, throws StackInUseError.
 * Otherwise stops the Temporal dev server it left (PostgreSQL's own postmaster.pid is handled
 * by startEmbeddedPostgres), and returns one line per thing it stopped, for the start-up banner.
 */
export async function takeOverStack(file: string): Promise<string[]> {
  if (!existsSync(file)) return [];
  let previous: StackState;
  try {
    previous = JSON.parse(readFileSync(file, 'utf8')) as StackState;
  } catch {
    return [`Ignored an unreadable ${file}`];
  }
  if (previous.owner !== process.pid && isAlive(previous.owner) && /\bdev\.(ts|js)\b/.test(commandLine(previous.owner))) {
    throw new StackInUseError(`another npm start of this checkout is running (pid ${previous.owner}); stop it first (Ctrl-C, or kill ${previous.owner})`);
  }
  const notes: string[] = [];
  const t = previous.temporal;
  if (t && isAlive(t.pid) && /\btemporal\b/.test(commandLine(t.pid))) {
    await stopPid(t.pid, 'SIGTERM', 15_000);
    notes.push(`Stopped a stale Temporal dev server (pid ${t.pid}, port ${t.port}) left by an earlier npm start`);
  }
  return notes;
}
