import type { Logger } from '../common/logger';
import { DomainError, ErrorCode } from '../domain/domain-error';
import { MongoTaskRepository } from './mongodb/mongo-task.repository';
import { SqliteTaskRepository } from './sqlite/sqlite-task.repository';
import type { TaskRepository } from './task-repository';

// `tesp store copy --from sqlite:PATH --to mongodb://...`: every task of one store into another, so a laptop
// deployment can grow into a production one. Run it with tesp stopped. Tasks keep their ids, records and logs and
// go in oldest first (the new store's order) with their owners; a task the target has already is left as it is, so a copy that broke
// off can simply run again. Leases and backend references stay behind: a task that was still running is taken over
// at the next start like one whose holder died.

const PAGE = 500;

/** The copy reads and writes every task, whoever owns it. */
const EVERY_TASK = { all: true } as const;

/** A store named on the command line: sqlite:PATH, or a mongodb:// / mongodb+srv:// URL. */
export async function openStoreByName(name: string, logger: Logger, serverSelectionTimeoutMs = 5000): Promise<TaskRepository> {
  if (name.startsWith('sqlite:')) {
    const file = name.slice('sqlite:'.length);
    if (!file) throw new DomainError(ErrorCode.InvalidArgument, 'sqlite: needs the path of the SQLite file, e.g. sqlite:./data/tesp.sqlite');
    return new SqliteTaskRepository(file);
  }
  if (/^mongodb(\+srv)?:\/\//.test(name)) {
    const repo = new MongoTaskRepository({ url: name, serverSelectionTimeoutMs }, logger);
    await repo.connect();
    return repo;
  }
  throw new DomainError(ErrorCode.InvalidArgument, `"${name.replace(/\/\/[^@/]*@/, '//***@')}" names no store: use sqlite:PATH or mongodb://host[:port]/database`);
}

export interface CopyReport {
  copied: number;
  alreadyThere: number;
}

export async function copyTasks(from: TaskRepository, to: TaskRepository, progress?: (done: number) => void): Promise<CopyReport> {
  // Lists are newest first: collect the ids page by page, then copy oldest first.
  const ids: string[] = [];
  let pageToken: string | undefined;
  do {
    const page = await from.list(EVERY_TASK, { tags: [], pageSize: PAGE, pageToken, fields: 'minimal' });
    ids.push(...page.tasks.map((task) => task.id));
    pageToken = page.nextPageToken;
  } while (pageToken);
  ids.reverse();
  const report: CopyReport = { copied: 0, alreadyThere: 0 };
  // One at a time: the target orders tasks by insertion, and that order must stay the creation order.
  for (const id of ids) {
    const task = await from.getUnscoped(id);
    if (!task) continue;
    const { control, ...record } = task;
    // Looked up first, not only refused by the unique index: the copy stays idempotent on any server.
    if (await to.getUnscoped(id)) {
      report.alreadyThere += 1;
      progress?.(report.copied + report.alreadyThere);
      continue;
    }
    try {
      await to.insert(record, control.owner ?? '');
      report.copied += 1;
    } catch (err) {
      if (!(err instanceof DomainError && err.code === ErrorCode.Conflict)) throw err;
      report.alreadyThere += 1;
    }
    progress?.(report.copied + report.alreadyThere);
  }
  return report;
}
